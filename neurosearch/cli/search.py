"""``find``, ``show`` and ``info``: reading an index (no model, no torch)."""

from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, cache_dir, fail, open_index, print_json
from neurosearch.labeling.config import LabelConfig


def find(
    query: Annotated[Optional[list[str]], typer.Argument(help="A concept, e.g. weekdays or colours of the rainbow (quotes optional).", show_default=False)] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", "-t", help="Search for these tokens instead: a,b,c.")] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Results per kind.")] = 10,
    kind: Annotated[str, typer.Option(help="clusters, neurons or both.")] = "both",
    k: Annotated[Optional[int], typer.Option("--k", help="Clusters of one cut at K (default: every node of the cluster tree, so the query picks K).")] = None,
    exact: Annotated[Optional[bool], typer.Option("--exact/--ann", help="Score every row exactly, or rerank HNSW candidates (default: exact below 50,000 rows, where it is faster than loading the HNSW graph).", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option(help="Profile method to search (default: the index's).")] = None,
    all_hits: Annotated[bool, typer.Option("--all", help="Also list hits below the relevance floor.")] = False,
    min_simulation: Annotated[Optional[float], typer.Option(help="Only hits whose explanation scored at least this on held-out text (simulation score, `neurosearch score`; not the relevance floor of --all).", show_default=False)] = None,
    llm: Annotated[bool, typer.Option("--llm", help="Ask an LLM for the concept's members and search for those (a "
                                      "category the offline expansion misses, e.g. tech companies; key from "
                                      "OPENAI_API_KEY, sent to --base-url).")] = False,
    llm_model: Annotated[str, typer.Option(help="Chat model for --llm.")] = LabelConfig.llm_model,
    base_url: Annotated[Optional[str], typer.Option(
        help="OpenAI-compatible server for --llm (OPENAI_API_KEY, when set, is sent to it).")] = None,
    llm_refresh: Annotated[bool, typer.Option("--llm-refresh", help="Ask the LLM again instead of using the "
                                              "member list kept from an earlier --llm run.")] = False,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the neurons and clusters that specialise in a concept."""
    text = " ".join(query) if query else None
    if text is None and tokens is None:
        fail("give a query (e.g. neurosearch find weekdays) or --tokens a,b,c")
    if text is not None and tokens is not None:
        fail("give a query or --tokens, not both")
    if llm and text is None:
        fail("--llm lists the members of a query's concept: give a query, not --tokens")
    if llm_refresh and not llm:
        fail("--llm-refresh goes with --llm")
    options = dict(top=top, kind=kind, k=k, exact=exact, method=method, all_hits=all_hits, min_simulation=min_simulation)
    if llm:
        from neurosearch.labeling.client import check_credentials
        from neurosearch.labeling.members import find_members

        config = LabelConfig(llm_model=llm_model, base_url=base_url)
        check_credentials(config)  # before the index opens
        opened = open_index(index)
        with _waiting(f"asking {llm_model} for the members of the concept", quiet=as_json):
            result = find_members(opened, text, config, cache_dir=cache_dir(),
                                  refresh=llm_refresh, **options)
    else:
        token_list = tokens.split(",") if tokens is not None else None
        result = open_index(index).find(text, tokens=token_list, **options)
    if as_json:
        print_json(result.to_json())
        return
    from neurosearch.cli.render import console, find_table

    out = console()
    out.print(find_table(result, out.width))


def show(
    what: Annotated[str, typer.Argument(help="cluster or neuron (a neuron L:I or an SAE feature LL:fI); or the id itself: `show L2:f1234`, `show k200/84`.")],
    ident: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="Cluster id (17, k50/17, filter+tfidf/k200/17, tree/412: a node of the cluster tree), neuron L:I or SAE feature LL:fI.", show_default=False)] = None,
    contexts: Annotated[int, typer.Option(help="Contexts in each list (on its top tokens; strongest firings overall).")] = 5,
    corpus: Annotated[Optional[str], typer.Option(help="The corpus file to re-read contexts from (default: the index's, where the manifest says).")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report on one cluster or neuron: theme, top tokens with mean activation and z, contexts, ablation."""
    import shlex

    from neurosearch.index.contexts import read_contexts
    from neurosearch.index.evidence import cluster_evidence, neuron_evidence

    from neurosearch.ids import is_unit_name

    if ident is None and what not in ("cluster", "neuron", "feature"):
        what, ident = ("neuron" if is_unit_name(what) else "cluster"), what
    what = "neuron" if what == "feature" else what
    if what not in ("cluster", "neuron"):
        fail(f"show takes 'cluster' or 'neuron' (or 'feature'), got '{what}'")
    if ident is None:
        fail(f"show {what} needs an id, e.g. show {what} {'k200/17' if what == 'cluster' else 'L2:f1234 or 3:1021'}")
    if contexts < 0:
        fail(f"--contexts must be 0 or more, got {contexts}")
    opened = open_index(index)
    suffix = f" --index {shlex.quote(str(index))}" if index is not None else ""
    if what == "cluster":
        info = opened.cluster(ident)
        evidence = cluster_evidence(opened, info, contexts)
        stored = opened.ablation_for("cluster", info.key, info.neurons)
        scores = opened.unit_scores.of("cluster", info.key)
    else:
        neuron = opened.neuron(ident)
        evidence = neuron_evidence(opened, neuron.id, neuron.method, contexts)
        stored = opened.ablation_for("neuron", neuron.id, [neuron.id])
        scores = opened.unit_scores.of("neuron", neuron.id)
    evidence.verify += suffix
    ablation, note = stored.current, stored.note(evidence.verify)
    (on_top, strongest), lookup = read_contexts(opened, [evidence.on_top_tokens, evidence.strongest], corpus=corpus)
    common = {"top_token_means": evidence.token_means, "top_token_z": evidence.token_z,
              "contexts": {"on_top_tokens": on_top, "strongest": strongest}, "corpus": lookup.to_json(),
              "note": evidence.note, "verify": evidence.verify,
              "ablation": ablation.to_json() if ablation else None, "ablation_note": note,
              "scores": scores or None}
    if what == "cluster":
        if as_json:
            from dataclasses import asdict

            print_json({**asdict(info), "key": info.key, **common})
            return
        from neurosearch.cli.render import console
        from neurosearch.cli.reports import cluster_report
        from neurosearch.neuron_layers import neuron_layer_text

        out = console()
        manifest = opened.manifest
        layer_text = (f"{len(info.neurons)} features of the SAE at {manifest.site} layer {manifest.sae_layer}"
                      if manifest.sae_layer is not None else neuron_layer_text(info.neurons, manifest.n_layers))
        out.print(cluster_report(info, layer_text, evidence, on_top, strongest, lookup, ablation, note, out.width,
                                 scores))
    else:
        if as_json:
            data = neuron.to_json()
            data.pop("top_activations")  # the "strongest" list, with text
            print_json({**data, **common, "clusters": evidence.clusters})
            return
        from neurosearch.cli.render import console
        from neurosearch.cli.reports import neuron_report

        out = console()
        out.print(neuron_report(neuron, evidence, on_top, strongest, lookup, ablation, note, out.width, scores))


def info(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """What an index holds: model, site, corpus, tokens, methods, K, stage timings."""
    opened = open_index(index)
    data = opened.info()
    if as_json:
        print_json(data.to_json())
        return
    from neurosearch.cli.render import console, info_table

    console().print(info_table(data))


def _waiting(message: str, quiet: bool):
    """A spinner on stderr while a request runs (none for --json, or when stderr is no terminal)."""
    import contextlib

    from rich.console import Console
    from rich.text import Text

    from neurosearch.text import for_terminal

    stderr = Console(stderr=True)
    if quiet or not stderr.is_terminal:
        return contextlib.nullcontext()
    return stderr.status(Text(for_terminal(message)))  # Text: a model name is not markup
