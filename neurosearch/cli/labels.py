"""``label``: themes for an index's clusters and neurons, from a local language model or a server."""

from dataclasses import replace
from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, RichReporter, fail, open_index, parse_ints, print_json
from neurosearch.text import for_terminal
from neurosearch.labeling.config import LabelConfig


def label(
    index: IndexOption = None,
    lm: Annotated[Optional[str], typer.Option(
        "--lm", help="The language model on this machine that writes the themes: 'local' (the default when "
                     "--base-url is not given: Gemma 3 270M, from the optional lm extra) or a model directory or "
                     ".gguf file.")] = None,
    base_url: Annotated[Optional[str], typer.Option(
        help="Ask an OpenAI-compatible server instead (OpenAI: https://api.openai.com/v1; llama.cpp, vLLM, ...). "
             "OPENAI_API_KEY, when set, is sent to this server: name only one you trust.")] = None,
    llm_model: Annotated[Optional[str], typer.Option(
        help=f"The server's chat model (with --base-url; default {LabelConfig.llm_model}).")] = None,
    neurons: Annotated[int, typer.Option(help="Also label the N most selective neurons.")] = 0,
    k: Annotated[Optional[str], typer.Option("--k", help="Label clusters at these K (default: all).")] = None,
    ids: Annotated[Optional[str], typer.Option("--ids", help="Label exactly these, comma-separated: clusters "
                                               "(k200/84, or tree/8855: a node of the cluster tree, as find "
                                               "returns them) and neurons (2:1454).")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="Label the hits that find QUERY lists (its "
                                                 "clusters and neurons, --top of each).")] = None,
    top: Annotated[int, typer.Option("--top", help="Hits per kind for --query.")] = 10,
    force: Annotated[bool, typer.Option("--force", help="Re-label even what is cached.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request (a server).")] = LabelConfig.timeout,
    contexts: Annotated[int, typer.Option(help="Contexts per prompt, on the unit's top tokens (a server; needs the "
                                          "corpus file).")] = LabelConfig.contexts,
    max_consecutive_failures: Annotated[int, typer.Option(
        "--max-failures", help="Stop after this many items failed in a row (0: never).")] = LabelConfig.max_consecutive_failures,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the prompts it would send (no key needed, nothing "
                                          "sent, no model loaded).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a short theme for every cluster, or for those --ids or --query name: with a language model on this machine (default: Gemma 3 270M from the lm extra), or with the OpenAI-compatible server --base-url names (key from OPENAI_API_KEY only, sent to that server)."""
    from neurosearch.format.layout import LABELS
    from neurosearch.labeling.client import check_credentials
    from neurosearch.labeling.llm import label_items, load_labels, pending_requests
    from neurosearch.labeling.requests import hit_ids, label_requests

    if base_url is not None and lm is not None:
        fail("give --lm (a language model on this machine) or --base-url (a server), not both")
    if base_url is None and llm_model is not None:
        fail("--llm-model names a server's model: give --base-url too (OpenAI: --base-url https://api.openai.com/v1)")
    config = LabelConfig(llm_model=llm_model or LabelConfig.llm_model, base_url=base_url, timeout=timeout,
                         contexts=contexts, max_consecutive_failures=max_consecutive_failures)
    spec = None if base_url is not None else _local_spec(lm)
    if spec is not None:
        config = replace(config, contexts=0)  # a language model's prompt quotes none (completion.py): none read
    ks = parse_ints(k, "--k")
    if neurons < 0:
        fail(f"--neurons must be >= 0, got {neurons}")
    if ids is not None and query is not None:
        fail("give --ids or --query, not both")
    if (ids is not None or query is not None) and (ks or neurons):
        fail(f"{'--ids' if ids is not None else '--query'} labels exactly the units it names: leave out --k and --neurons")
    opened = open_index(index)
    for value in ks or []:
        opened.manifest.check_k(value)
    if not dry_run:  # before the requests are prepared (seconds on a large index)
        if spec is None:
            check_credentials(config)
        else:
            _check_local(spec)
    units = ids.split(",") if ids is not None else hit_ids(opened, query, top) if query is not None else None
    requests = label_requests(opened, ks=ks, neurons=neurons, contexts=config.contexts, ids=units)
    store = opened.state.write_path(LABELS)  # the index's own store, or the state folder's
    shipped = {} if opened.state.writes_into_index else load_labels(opened.path / LABELS)
    if dry_run:
        pending = pending_requests(requests, store, config, force=force, shipped=shipped, lm=spec)
        _print_dry_run(pending, len(requests), config, spec, as_json)
        return
    with RichReporter(quiet=as_json, transient=True) as reporter:
        advance = reporter.task("labelling", len(requests))
        run = label_items(requests, store, config, force=force, on_progress=lambda *a: advance(1), shipped=shipped,
                          lm=spec, reporter=reporter)
    timing = {"seconds_per_label": run.seconds_per_label, "load_seconds": run.load_seconds}
    if as_json:
        print_json({"labelled": run.labelled, "cached": run.cached, "failed": run.failed, "skipped": run.skipped,
                    "aborted": run.aborted, "failures": run.failures, "messages": run.messages, "store": str(store),
                    "model": run.model, **timing})
        if _failed(run, spec):
            raise typer.Exit(1)
        return
    if run.aborted:
        fail(run.aborted)
    for message in run.messages:
        typer.echo(for_terminal(message), err=True)
    typer.echo(f"labels: {run.labelled} new, {run.cached} cached, {run.failed} failed, {run.skipped} skipped"
               + _timing_note(run))
    if _failed(run, spec):
        raise typer.Exit(1)


def _failed(run, spec) -> bool:
    """Exit 1 when an item failed; a local model's junk themes do not count (the units keep their
    offline labels, and a small model writes some on any index)."""
    if spec is None or run.aborted:
        return not run.ok
    return any(kind != "junk" for kind in run.failures)


def _local_spec(lm: Optional[str]):
    """The LMSpec of ``--lm`` (None: the default Gemma), its converted copies under the state folder's cache."""
    from neurosearch.cli.common import cache_dir
    from neurosearch.lm.config import LMSpec

    spec = LMSpec.parse(lm, cache_dir=cache_dir() / "lm")
    if spec.kind == "remote":
        fail("--lm names a language model on this machine ('local', a model directory or a .gguf file); "
             "for a server give --base-url (and --llm-model)")
    return spec


def _check_local(spec) -> None:
    """One line now, before requests are prepared, when the model cannot be had: the default
    needs the lm extra; a path must exist and pass its checks (hashed with progress, remembered)."""
    import importlib.util

    from neurosearch.lm.files import GEMMA_PACKAGE, INSTALL_LM
    from neurosearch.lm.spec import identify

    if spec.path is None:
        if importlib.util.find_spec(GEMMA_PACKAGE) is None:
            fail(f"label writes themes with the default local language model, Gemma 3 270M, which needs the optional "
                 f"lm extra ({GEMMA_PACKAGE} not installed): {INSTALL_LM}; or name a server with --base-url URL")
        return
    with RichReporter(transient=True) as reporter:
        identify(spec, reporter=reporter)


def _timing_note(run) -> str:
    """`` (MODEL, 2.1 s per label; loaded in 10.4 s)`` when anything was asked."""
    if run.seconds_per_label is None:
        return ""
    loaded = f"; loaded in {run.load_seconds:.1f} s" if run.load_seconds is not None else ""
    return f" ({for_terminal(run.model)}: {run.seconds_per_label:.1f} s per label{loaded})"


def _print_dry_run(pending: list, total: int, config: LabelConfig, spec, as_json: bool) -> None:
    """What ``label`` would send: every prompt in JSON, else a summary and the first prompt."""
    if spec is not None:
        from neurosearch.lm.spec import identify

        model = identify(spec).key
        if as_json:
            print_json({"model": model, "base_url": None, "requests": total, "cached": total - len(pending),
                        "would_send": [{"key": r.key, "prompt": p} for r, p in pending]})
            return
        typer.echo(f"would write {len(pending)} theme(s) with {for_terminal(model)} (a language model on this "
                   f"machine, loaded only then); {total - len(pending)} of {total} already labelled")
        for request, prompt in pending[:1]:
            typer.echo(f"\nfirst prompt, {for_terminal(request.key)} (the model continues it):")
            typer.echo(for_terminal(prompt, None))
    else:
        if as_json:
            print_json({"model": config.llm_model, "base_url": config.base_url, "requests": total,
                        "cached": total - len(pending),
                        "would_send": [{"key": r.key, "messages": m} for r, m in pending]})
            return
        typer.echo(f"would send {len(pending)} request(s) to {for_terminal(config.base_url or 'the OpenAI API')} "
                   f"({for_terminal(config.llm_model)}); {total - len(pending)} of {total} already labelled")
        for request, messages in pending[:1]:
            typer.echo(f"\nfirst request, {for_terminal(request.key)}:")
            for line in messages[-1]["content"].split("\n"):
                typer.echo(for_terminal(line, None))
    if len(pending) > 1:
        typer.echo("\nthen: " + ", ".join(for_terminal(r.key) for r, _ in pending[1:11]) + (" ..." if len(pending) > 11 else ""))
