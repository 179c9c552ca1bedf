"""``label``: LLM themes for an index's clusters and neurons."""

from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, RichReporter, fail, open_index, parse_ints
from neurosearch.text import for_terminal
from neurosearch.labeling.llm import LabelConfig, label_items, load_labels


def label(
    index: IndexOption = None,
    llm_model: Annotated[str, typer.Option(help="Chat model name.")] = LabelConfig.llm_model,
    base_url: Annotated[Optional[str], typer.Option(
        help="Any OpenAI-compatible server (llama.cpp, vLLM, ...). OPENAI_API_KEY, when set, is sent to this "
             "server: name only one you trust.")] = None,
    neurons: Annotated[int, typer.Option(help="Also label the N most selective neurons.")] = 0,
    k: Annotated[Optional[str], typer.Option("--k", help="Label clusters at these K (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-label even what is cached.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = LabelConfig.timeout,
    contexts: Annotated[int, typer.Option(help="Activating contexts per prompt (needs the corpus file).")] = LabelConfig.contexts,
    max_consecutive_failures: Annotated[int, typer.Option(
        "--max-failures", help="Stop after this many items failed in a row (0: never).")] = LabelConfig.max_consecutive_failures,
) -> None:
    """Ask an LLM for a short theme of every cluster (key from OPENAI_API_KEY only, sent to --base-url)."""
    from neurosearch.index.stored import LABELS
    from neurosearch.labeling.requests import label_requests

    config = LabelConfig(llm_model=llm_model, base_url=base_url, timeout=timeout, contexts=contexts,
                         max_consecutive_failures=max_consecutive_failures)
    ks = parse_ints(k, "--k")
    if neurons < 0:
        fail(f"--neurons must be >= 0, got {neurons}")
    opened = open_index(index)
    requests = label_requests(opened, ks=ks, neurons=neurons, contexts=contexts)
    with RichReporter(transient=True) as reporter:
        advance = reporter.task("labelling", len(requests))
        store = opened.state.write_path(LABELS)  # the index's own store, or the state folder's
        shipped = {} if opened.state.writes_into_index else load_labels(opened.path / LABELS)
        run = label_items(requests, store, config, force=force, on_progress=lambda *a: advance(1), shipped=shipped)
    if run.aborted:
        fail(run.aborted)
    for message in run.messages:
        typer.echo(for_terminal(message), err=True)
    typer.echo(f"labels: {run.labelled} new, {run.cached} cached, {run.failed} failed, {run.skipped} skipped")
    if not run.ok:
        raise typer.Exit(1)
