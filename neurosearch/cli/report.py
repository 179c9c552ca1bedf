"""``report``: a static HTML site of an index, browsable from disk (no server, no network)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, open_index, print_json


def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the site to (never inside the index).")] = Path("neurosearch-report"),
    methods: Annotated[Optional[str], typer.Option(help="Methods whose clusters get pages, comma-separated, or all (default: the index's search method).")] = None,
    k: Annotated[Optional[str], typer.Option("--k", help="K values, comma-separated (default: all in the index).")] = None,
    neurons: Annotated[bool, typer.Option("--neurons/--no-neurons", help="A page for every neuron, or only for clusters.")] = True,
    contexts: Annotated[int, typer.Option(help="Activating contexts per page (re-read from the corpus when it is there).")] = 5,
    corpus: Annotated[Optional[str], typer.Option(help="Corpus file for the contexts (default: the index's).")] = None,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a browsable HTML report of an index: overview, Table 3, a page per cluster and neuron, search."""
    from neurosearch.errors import NeurosearchError
    from neurosearch.report import ReportConfig, write_report

    chosen = None if methods is None else (("all",) if methods == "all" else tuple(m.strip() for m in methods.split(",")))
    try:
        ks = None if k is None else tuple(int(x) for x in k.split(","))
    except ValueError:
        raise NeurosearchError(f"--k must be integers separated by commas, got '{k}'") from None
    opened = open_index(index)
    config = ReportConfig(methods=chosen, ks=ks, neurons=neurons, contexts=contexts, corpus=corpus)
    summary = write_report(opened, out, config, log=None if as_json else lambda m: typer.echo(m, err=True))
    if as_json:
        print_json(summary.to_json())
        return
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {summary.out}/index.html: {summary.clusters} clusters, {summary.neurons} neurons, "
               f"{summary.files} files, {summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")
