"""What every command shares: the index options, JSON output, progress bars, opening an index.

No ``from __future__ import annotations`` in the cli package: typer evaluates the annotations.
"""

import contextvars
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from neurosearch.format import layout
from neurosearch.format.shipped import shipped_index

DEFAULT_INDEX = shipped_index()
"""The index that came with this neurosearch (installed package data, or index/default of a checkout)."""
INDEX_ENV = "NEUROSEARCH_INDEX"

IndexOption = Annotated[
    Optional[Path],
    typer.Option("--index", "-i", help="Index directory (default: $NEUROSEARCH_INDEX, else the index installed with neurosearch)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def default_index() -> Path:
    """``$NEUROSEARCH_INDEX``, else the shipped index (installed with the package, or the checkout's)."""
    import os

    return Path(os.environ[INDEX_ENV]).expanduser() if os.environ.get(INDEX_ENV) else DEFAULT_INDEX


def error_line(message: str) -> None:
    """The one format of an error on stderr (one line: messages quote outside text, so it is sanitised)."""
    from neurosearch.text import for_terminal

    typer.echo(f"neurosearch: error: {for_terminal(message, 2000)}", err=True)


def interrupted_line(message: str) -> None:
    """Ctrl-C: one line on stderr, with what was kept when the command knows."""
    from neurosearch.text import for_terminal

    typer.echo("neurosearch: interrupted" + (f" {for_terminal(message, 2000)}" if message else ""), err=True)


def parse_ints(text: str | None, option: str, *, minimum: int = 1) -> list[int] | None:
    """``"50,200"`` -> [50, 200] for a comma-separated option (None stays None); bad values fail in one line."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(value < minimum for value in values):
        fail(f"{option} takes integers >= {minimum} separated by commas, got '{text}'")
    return values


def fail(message: str, code: int = 1) -> None:
    error_line(message)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


class RichReporter:
    """Reporter (see progress.py) drawing rich progress bars on stderr.

    One line per task: what it counts, a bar, done/total, elapsed and remaining time (estimated
    over the whole task, so stages of a few long steps get one too). A finished task's bar stays on
    screen, so a build leaves a record of its stages; on an error or Ctrl-C the unfinished bars are
    taken down (the message says where it stopped). Log lines go out as they come.
    """

    def __init__(self, quiet: bool = False, transient: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
            disable=quiet,
            speed_estimate_period=3600,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc and exc[0] is not None:  # interrupted or failed: no half-drawn bars, the message says where
            for task in self.progress.tasks:
                if not task.finished:
                    self.progress.update(task.id, visible=False)
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
            from rich.text import Text

            from neurosearch.text import for_terminal

            self.progress.console.print(Text(for_terminal(message, 2000)))


STATE_DIR: "contextvars.ContextVar[Optional[Path]]" = contextvars.ContextVar("neurosearch_state_dir", default=None)
"""The global ``--state-dir`` of the running invocation (set and reset by the app's ErrorBoundary)."""


def state_dir_option() -> Optional[Path]:
    """The global ``--state-dir`` of this invocation (None: $NEUROSEARCH_STATE or the XDG default)."""
    return STATE_DIR.get()


def open_index(index: Optional[Path]) -> Any:
    from neurosearch.index import Index

    if index is None and not (default_index() / layout.MANIFEST).is_file() and default_index() == DEFAULT_INDEX:
        from neurosearch.errors import NeurosearchError

        raise NeurosearchError(f"no default index at {DEFAULT_INDEX} (this neurosearch was installed without it): "
                               f"pass --index DIR or set ${INDEX_ENV}")
    from neurosearch.model.phrases import PhraseEmbedder  # neither torch nor numpy until a phrase needs it

    return Index.load(index or default_index(), state_root=state_dir_option(), embedder=PhraseEmbedder(cache_dir=cache_dir()))


def cache_dir() -> Path:
    """Where commands keep what they can compute again (phrase expansions, LLM member lists)."""
    from neurosearch.format.state import state_root

    return state_root(state_dir_option()) / "cache"
