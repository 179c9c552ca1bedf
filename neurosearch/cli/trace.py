"""``trace``: run the index's model over a text and show which indexed units respond (needs torch)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, fail, open_index, print_json


def trace(
    text: Annotated[Optional[str], typer.Argument(help="The text to trace (or --file).")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="Read the text from this UTF-8 file ('-': stdin).")] = None,
    unit: Annotated[Optional[str], typer.Option("--unit", "-u", help="Show one unit along the text instead: a neuron L:I or a cluster (17, k200/17, METHOD/kK/ID, tree/412).")] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Units listed per token, of each kind.")] = 5,
    kind: Annotated[str, typer.Option(help="neurons, clusters or both.")] = "both",
    k: Annotated[Optional[int], typer.Option("--k", help="Cluster granularity (default: the largest K).")] = None,
    method: Annotated[Optional[str], typer.Option(help="Profile method for themes and clusters (default: the index's).")] = None,
    mark: Annotated[float, typer.Option(help="With --unit: tokens at or above this z are marked [[like this]].")] = 2.0,
    max_tokens: Annotated[int, typer.Option(help="Refuse texts longer than this many word pieces.")] = 4096,
    index: IndexOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which indexed neurons and clusters respond to each token of a text (loads the model: needs torch).

    A neuron's response is its z-score against the index's corpus statistics,
    (activation - corpus mean) / corpus std; a cluster's is the mean z of its neurons.
    With --unit, the text is shown with that unit's z at every token, marked without colour too.
    """
    from neurosearch.experiments.trace import TraceConfig, resolve_unit

    if (text is None) == (file is None):
        fail("give the text to trace as an argument or with --file PATH (one of them)")
    body = text if text is not None else _read_text(file)
    opened = open_index(index)
    config = TraceConfig(top=top, kind=kind, method=method, k=k, max_tokens=max_tokens)
    config.validate()
    if unit is not None:
        resolve_unit(opened, unit)  # a bad unit fails before the model loads
    from neurosearch.experiments.trace import Tracer
    from neurosearch.model.loading import load_index_model

    tracer = Tracer(opened, load_index_model(opened), config)
    from neurosearch.cli.render import console
    from neurosearch.cli.trace_render import trace_table, unit_view

    if unit is not None:
        result = tracer.trace_unit(body, unit)
        if as_json:
            print_json(result.to_json())
            return
        out = console()
        out.print(unit_view(result, mark, out.width))
        return
    traced = tracer.trace(body)
    if as_json:
        print_json(traced.to_json())
        return
    out = console()
    out.print(trace_table(traced, out.width))


def _read_text(path: Path) -> str:
    import sys

    try:
        if str(path) == "-":
            return sys.stdin.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"no such file: {path}")
    except IsADirectoryError:
        fail(f"{path} is a directory, not a text file")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    raise AssertionError("unreachable")
