"""How library code reports progress without depending on a terminal.

Long stages call ``reporter.task(description, total)`` and advance the returned callable; the CLI
passes a rich-backed reporter, library users get silence by default.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Callable, Protocol


class Reporter(Protocol):
    def task(self, description: str, total: float | None = None) -> Callable[[float], None]:
        """Start a task; the returned function advances it by its argument."""

    def finish(self, description: str) -> None:
        """Mark the task started with ``description`` as finished."""

    def log(self, message: str) -> None:
        """A one-line note for the user."""


class SilentReporter:
    def task(self, description: str, total: float | None = None) -> Callable[[float], None]:
        return lambda _amount: None

    def finish(self, description: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (Linux), so a stage's peak can be read on its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_gb() -> float:
    """Peak resident memory since the last reset (VmHWM), in GB; ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
