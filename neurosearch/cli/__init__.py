"""The command line: ``app`` (typer) and ``main`` (the console script)."""

from neurosearch.cli.app import app, main

__all__ = ["app", "main"]
