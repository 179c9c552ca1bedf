"""What every command shares: the index options, JSON output, progress bars, opening an index.

No ``from __future__ import annotations`` in the cli package: typer evaluates the annotations.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

DEFAULT_INDEX = Path(__file__).resolve().parents[2] / "index" / "default"

IndexOption = Annotated[
    Optional[Path],
    typer.Option("--index", "-i", help="Index directory (default: the shipped index/default)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def default_index() -> Path:
    """The shipped index: beside the package in a checkout, or NEUROSEARCH_INDEX."""
    import os

    return Path(os.environ.get("NEUROSEARCH_INDEX", DEFAULT_INDEX))


def error_line(message: str) -> None:
    """The one format of an error on stderr."""
    typer.echo(f"neurosearch: error: {message}", err=True)


def fail(message: str, code: int = 1) -> None:
    error_line(message)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


class RichReporter:
    """Reporter (see progress.py) drawing rich progress bars on stderr."""

    def __init__(self, quiet: bool = False, transient: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
            disable=quiet,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def task(self, description: str, total: float | None = None) -> Callable[[float], None]:
        task_id = self.progress.add_task(description, total=total)
        self.tasks[description] = task_id
        return lambda amount: self.progress.advance(task_id, amount)

    def finish(self, description: str) -> None:
        task_id = self.tasks.get(description)
        if task_id is not None:
            task = self.progress.tasks[task_id]
            self.progress.update(task_id, total=task.completed)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message)


def open_index(index: Optional[Path]) -> Any:
    from neurosearch.index import Index

    return Index.load(index or default_index())
