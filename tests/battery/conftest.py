"""The fault and bad-input battery: every case ends in one error line or a correct answer, never a traceback.

A case is *handled* when its test passes: the command either answered correctly (exit 0) or
printed exactly one line ``neurosearch: error: ...`` on stderr and exited non-zero, without a
Python traceback, without losing stored data and without a destructive write. The summary line
at the end of a run counts them ("battery: N cases, M handled, T tracebacks"). Helpers are in
battery_kit.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from battery.battery_kit import TALLY, battery_config


def pytest_runtest_logreport(report: Any) -> None:
    if "battery/" in report.nodeid and (report.when == "call" or report.outcome != "passed"):
        if report.when == "call" or report.when == "setup":
            TALLY["cases"] += 1
            TALLY["handled"] += report.outcome == "passed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY["cases"]:
        terminalreporter.write_line(f"battery: {TALLY['cases']} cases, {TALLY['handled']} handled, "
                                    f"{TALLY['tracebacks']} tracebacks")


@pytest.fixture(scope="session")
def battery_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_corpus: Path) -> Path:
    """The tiny index every battery case starts from (never changed: cases work on copies)."""
    from neurosearch.pipeline import build_index

    out = tmp_path_factory.mktemp("battery") / "index"
    build_index(battery_config(tiny_model, tiny_corpus), out)
    return out


@pytest.fixture
def index_copy(battery_index: Path, tmp_path: Path) -> Path:
    """A private copy of the battery index."""
    copy = tmp_path / "index"
    shutil.copytree(battery_index, copy)
    return copy
