"""``label``: LLM themes for an index's clusters and neurons."""

from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, RichReporter, fail, open_index, parse_ints, print_json
from neurosearch.text import for_terminal
from neurosearch.labeling.config import LabelConfig


def label(
    index: IndexOption = None,
    llm_model: Annotated[str, typer.Option(help="Chat model name.")] = LabelConfig.llm_model,
    base_url: Annotated[Optional[str], typer.Option(
        help="Any OpenAI-compatible server (llama.cpp, vLLM, ...). OPENAI_API_KEY, when set, is sent to this "
             "server: name only one you trust.")] = None,
    neurons: Annotated[int, typer.Option(help="Also label the N most selective neurons.")] = 0,
    k: Annotated[Optional[str], typer.Option("--k", help="Label clusters at these K (default: all).")] = None,
    ids: Annotated[Optional[str], typer.Option("--ids", help="Label exactly these, comma-separated: clusters "
                                               "(k200/84, or tree/8855: a node of the cluster tree, as find "
                                               "returns them) and neurons (2:1454).")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="Label the hits that find QUERY lists (its "
                                                 "clusters and neurons, --top of each).")] = None,
    top: Annotated[int, typer.Option("--top", help="Hits per kind for --query.")] = 10,
    force: Annotated[bool, typer.Option("--force", help="Re-label even what is cached.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = LabelConfig.timeout,
    contexts: Annotated[int, typer.Option(help="Contexts per prompt, on the unit's top tokens (needs the corpus file).")] = LabelConfig.contexts,
    max_consecutive_failures: Annotated[int, typer.Option(
        "--max-failures", help="Stop after this many items failed in a row (0: never).")] = LabelConfig.max_consecutive_failures,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the requests it would send (no key needed, nothing sent).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask an LLM for a short theme of every cluster, or of those --ids or --query name (key from OPENAI_API_KEY only, sent to --base-url)."""
    from neurosearch.format.layout import LABELS
    from neurosearch.labeling.llm import label_items, load_labels
    from neurosearch.labeling.client import check_credentials
    from neurosearch.labeling.llm import pending_requests
    from neurosearch.labeling.requests import hit_ids, label_requests

    config = LabelConfig(llm_model=llm_model, base_url=base_url, timeout=timeout, contexts=contexts,
                         max_consecutive_failures=max_consecutive_failures)
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
    if not dry_run:
        check_credentials(config)  # before the requests are prepared (seconds on a large index)
    units = ids.split(",") if ids is not None else hit_ids(opened, query, top) if query is not None else None
    requests = label_requests(opened, ks=ks, neurons=neurons, contexts=contexts, ids=units)
    store = opened.state.write_path(LABELS)  # the index's own store, or the state folder's
    shipped = {} if opened.state.writes_into_index else load_labels(opened.path / LABELS)
    if dry_run:
        _print_dry_run(pending_requests(requests, store, config, force=force, shipped=shipped), len(requests),
                       config, as_json)
        return
    with RichReporter(quiet=as_json, transient=True) as reporter:
        advance = reporter.task("labelling", len(requests))
        run = label_items(requests, store, config, force=force, on_progress=lambda *a: advance(1), shipped=shipped)
    if as_json:
        print_json({"labelled": run.labelled, "cached": run.cached, "failed": run.failed, "skipped": run.skipped,
                    "aborted": run.aborted, "failures": run.failures, "messages": run.messages, "store": str(store)})
        if not run.ok:
            raise typer.Exit(1)
        return
    if run.aborted:
        fail(run.aborted)
    for message in run.messages:
        typer.echo(for_terminal(message), err=True)
    typer.echo(f"labels: {run.labelled} new, {run.cached} cached, {run.failed} failed, {run.skipped} skipped")
    if not run.ok:
        raise typer.Exit(1)


def _print_dry_run(pending: list, total: int, config: LabelConfig, as_json: bool) -> None:
    """What ``label`` would send: every prompt in JSON, else a summary and the first prompt."""
    if as_json:
        print_json({"model": config.llm_model, "base_url": config.base_url, "requests": total,
                    "cached": total - len(pending), "would_send": [{"key": r.key, "messages": m} for r, m in pending]})
        return
    typer.echo(f"would send {len(pending)} request(s) to {for_terminal(config.base_url or 'the OpenAI API')} "
               f"({for_terminal(config.llm_model)}); {total - len(pending)} of {total} already labelled")
    for request, messages in pending[:1]:
        typer.echo(f"\nfirst request, {for_terminal(request.key)}:")
        for line in messages[-1]["content"].split("\n"):
            typer.echo(for_terminal(line, None))
    if len(pending) > 1:
        typer.echo("\nthen: " + ", ".join(for_terminal(r.key) for r, _ in pending[1:11]) + (" ..." if len(pending) > 11 else ""))
