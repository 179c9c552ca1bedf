"""``find``, ``show`` and ``info``: reading an index (no model, no torch)."""

from typing import Annotated, Any, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, fail, open_index, print_json


def find(
    query: Annotated[Optional[str], typer.Argument(help="A concept, e.g. 'weekdays' or 'colours of the rainbow'.")] = None,
    tokens: Annotated[Optional[str], typer.Option("--tokens", "-t", help="Search for these tokens instead: a,b,c.")] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Results per kind.")] = 10,
    kind: Annotated[str, typer.Option(help="clusters, neurons or both.")] = "both",
    k: Annotated[Optional[int], typer.Option("--k", help="Cluster granularity (default: the largest K).")] = None,
    exact: Annotated[Optional[bool], typer.Option("--exact/--ann", help="Score every row exactly, or rerank HNSW candidates (default: exact below 50,000 rows, where it is faster than loading the HNSW graph).", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option(help="Profile method to search (default: the index's).")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the neurons and clusters that specialise in a concept."""
    if query is None and tokens is None:
        fail("give a query (e.g. neurosearch find weekdays) or --tokens a,b,c")
    opened = open_index(index)
    token_list = tokens.split(",") if tokens is not None else None
    result = opened.find(query, tokens=token_list, top=top, kind=kind, k=k, exact=exact, method=method)
    if as_json:
        print_json(result.to_json())
        return
    from neurosearch.cli.render import console, find_table

    out = console()
    out.print(find_table(result, out.width))


def show(
    what: Annotated[str, typer.Argument(help="cluster or neuron.")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="Cluster id (17, k50/17, filter+tfidf/k200/17) or neuron L:I.")],
    contexts: Annotated[int, typer.Option(help="Top activating contexts to show (needs the corpus file).")] = 5,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report on one cluster or neuron: theme, tokens, layers, contexts, ablation results."""
    from neurosearch.index.contexts import context_records

    opened = open_index(index)
    if what not in ("cluster", "neuron"):
        fail(f"show takes 'cluster' or 'neuron', got '{what}'")
    if what == "cluster":
        info = opened.cluster(ident)
        refs = opened.cluster_refs(info, contexts)
        stored = opened.ablation_for("cluster", info.key, info.neurons)
        ablation, note = stored.current, stored.note(f"neurosearch ablate {info.key}")
        records = context_records(opened, refs, contexts)
        if as_json:
            from dataclasses import asdict

            print_json({**asdict(info), "key": info.key, "contexts": records,
                        "ablation": ablation.to_json() if ablation else None, "ablation_note": note})
            return
        from neurosearch.plots import neuron_layer_text
        from neurosearch.cli.render import cluster_report, console

        layer_text = neuron_layer_text(info.neurons, opened.manifest.n_layers)
        console().print(cluster_report(info, layer_text, _render(records), ablation, note))
    else:
        data = opened.neuron(ident)
        stored = opened.ablation_for("neuron", data["id"], [data["id"]])
        ablation, note = stored.current, stored.note(f"neurosearch ablate --neurons {data['id']}")
        records = context_records(opened, data["top_activations"], contexts)
        if as_json:
            print_json({**data, "contexts": records, "ablation": ablation.to_json() if ablation else None,
                        "ablation_note": note})
            return
        from neurosearch.cli.render import console, neuron_report

        console().print(neuron_report(data, _render(records), ablation, note))


def _render(records: list[dict]) -> list[Any]:
    from neurosearch.cli.render import highlight_context

    return [highlight_context(r["left"], r["token"], r["right"]) for r in records if r.get("token") is not None]


def info(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """What an index holds: model, site, corpus, tokens, methods, K, stage timings."""
    opened = open_index(index)
    data = opened.info()
    if as_json:
        print_json(data)
        return
    from neurosearch.cli.render import console, info_table

    console().print(info_table(data))
