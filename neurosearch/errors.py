"""The exception types the CLI turns into a single line on stderr."""

from __future__ import annotations


class NeurosearchError(Exception):
    """A user-facing error: bad input, missing files, unavailable services. Message is one line.

    ``option`` names the library parameter the message is about (``timeout``, ``base_url``): the
    message uses that name (its first whole-word occurrence, or the one in backticks), and the CLI
    shows the command's flag for it instead (``--timeout``), so library errors never name CLI flags
    and CLI errors never name Python parameters.
    """

    def __init__(self, *args: object, option: str | None = None) -> None:
        super().__init__(*args)
        self.option = option


class ConfigError(NeurosearchError, ValueError):
    """A configuration value out of its range or not among its choices (raised before any work)."""


class Interrupted(NeurosearchError):
    """Ctrl-C during long work; the message says what was kept and how to resume (exit 130)."""
