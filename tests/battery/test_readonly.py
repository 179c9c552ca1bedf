"""A read-only index (a read-only mount: permission bits mean nothing to root): commands that store
results fail before their work in one line, or store into the user's state folder; readers work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from battery.battery_kit import ENV, sub, tree_digest


def _read_only(index: Path) -> tuple[str, ...]:
    """A prefix that runs a command in a private mount namespace where ``index`` is mounted read-only."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only mount")
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged user and mount namespaces are not available here")
    return ("unshare", "-r", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(index))


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setitem(ENV, "NEUROSEARCH_STATE", str(folder))
    return folder


def _refused_or_stored_elsewhere(outcome, state: Path) -> None:
    if outcome.code == 0:
        assert state.is_dir() and any(state.rglob("*")), "exit 0 but the result was stored nowhere"
    else:
        line = outcome.error_line()  # one line on stderr: it failed before its work (which logs)
        assert "cannot write" in line or "read-only" in line.lower(), line


@pytest.mark.parametrize("args", [
    ["ablate", "--neurons", "0:1,1:3", "--sentences", "4", "--seeds", "2"],
    ["evaluate", "--methods", "filter", "--k", "3", "--sentences", "4", "--seeds", "2"],
    ["fit-head", "--epochs", "0.2"],
])
def test_writers_on_a_read_only_index(index_copy: Path, state: Path, args: list[str]):
    before = tree_digest(index_copy)
    _refused_or_stored_elsewhere(sub(*args, "--index", index_copy, prefix=_read_only(index_copy)), state)
    assert tree_digest(index_copy) == before


def test_label_on_a_read_only_index_asks_nothing_it_cannot_keep(llm, index_copy: Path, state: Path):
    outcome = sub("label", "--index", index_copy, "--base-url", llm.base_url, "--contexts", "0", "--k", "3",
                  prefix=_read_only(index_copy))
    _refused_or_stored_elsewhere(outcome, state)
    if outcome.code != 0:
        assert llm.seen == [], "requests were made whose labels could not be stored"


@pytest.mark.parametrize("args", [["find", "monday"], ["show", "cluster", "0"], ["info"], ["show", "neuron", "0:1"]])
def test_readers_on_a_read_only_index(index_copy: Path, state: Path, args: list[str]):
    sub(*args, "--index", index_copy, prefix=_read_only(index_copy)).ok()
