"""The ``neurosearch`` application: its commands, and the one place errors become messages.

Every command is a few lines over a library call (see the modules beside this one). A
:class:`~neurosearch.errors.NeurosearchError` raised anywhere below a command becomes one line on
stderr and exit 1; Ctrl-C exits 130 with one line (an :class:`~neurosearch.errors.Interrupted`
says what was kept and how to resume); anything else is a bug and keeps its traceback.
Heavy imports (torch, transformers) happen inside the commands that need a model, so
``find``/``show``/``info`` start fast. No ``from __future__ import annotations`` here: typer
evaluates the annotations.
"""

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from neurosearch.cli import build as build_commands
from neurosearch.cli import experiments as experiment_commands
from neurosearch.cli import labels as label_commands
from neurosearch.cli import report as report_commands
from neurosearch.cli import scores as score_commands
from neurosearch.cli import search as search_commands
from neurosearch.cli import trace as trace_commands
from neurosearch.cli import verify as verify_commands
from neurosearch.cli.common import STATE_DIR, error_line, interrupted_line
from neurosearch.errors import Interrupted, NeurosearchError


class ErrorBoundary(TyperGroup):
    """The app's single error mapping: library errors to one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        token = STATE_DIR.set(ctx.params.get("state_dir"))
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:  # a bad option value (click's UsageError): one line too
            usage = getattr(exc, "ctx", None)
            where = f"; see `neurosearch {usage.info_name} --help`" if usage is not None and usage.parent else ""
            error_line(exc.format_message().rstrip(".") + where)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None
        except Interrupted as exc:
            interrupted_line(str(exc))
            raise typer.Exit(130) from None
        except NeurosearchError as exc:
            error_line(self._in_flags(ctx, exc) or type(exc).__name__)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            interrupted_line("")
            raise typer.Exit(130) from None
        except MemoryError:
            error_line("out of memory; try a smaller --batch-tokens or corpus")
            raise typer.Exit(1) from None
        finally:
            STATE_DIR.reset(token)

    def _in_flags(self, ctx: Any, exc: NeurosearchError) -> str:
        """The message with the library parameter it is about (``exc.option``) named by its flag."""
        message, name = str(exc), exc.option
        command = self.get_command(ctx, ctx.invoked_subcommand) if name and ctx.invoked_subcommand else None
        for param in getattr(command, "params", ()):
            if param.name == name and param.opts:
                flag = max(param.opts, key=len)
                if f"`{name}`" in message:  # a parameter the message refers to in backticks
                    return message.replace(f"`{name}`", flag, 1)
                return re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, message, count=1)
        return message


app = typer.Typer(
    cls=ErrorBoundary,
    add_completion=False,
    no_args_is_help=True,
    help="Find, explain and causally verify concept-selective neurons and clusters in BERT-style models.",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from neurosearch import __version__

        typer.echo(f"neurosearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    state_dir: Annotated[Optional[Path], typer.Option("--state-dir", envvar="NEUROSEARCH_STATE", show_envvar=True, help="Where results about read-only indexes (the shipped one, an installed or read-only copy) are stored: labels, ablations, evaluations, fitted heads (default: $XDG_STATE_HOME/neurosearch or ~/.local/state/neurosearch).")] = None,
) -> None:
    """Find, explain and causally verify concept-selective neurons and clusters in BERT-style models."""
    # --state-dir is read from the parsed parameters by ErrorBoundary.invoke (STATE_DIR)


app.command()(build_commands.build)
app.command()(search_commands.find)
app.command()(search_commands.show)
app.command()(search_commands.info)
app.command()(experiment_commands.ablate)
app.command()(label_commands.label)
app.command()(score_commands.score)
app.command()(experiment_commands.evaluate)
app.command()(experiment_commands.plot)
app.command("fit-head")(build_commands.fit_head_command)
app.command()(verify_commands.verify)
app.command()(trace_commands.trace)
app.command()(report_commands.report)


def main() -> None:
    """Console-script entry point."""
    app()
