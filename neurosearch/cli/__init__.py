"""The command line. The typer application is ``neurosearch.cli.app.app``; ``main`` (the console
script) is loaded on first use, so that importing a command module does not import every other."""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from neurosearch.cli.app import main

        return main
    raise AttributeError(f"module 'neurosearch.cli' has no attribute {name!r}")
