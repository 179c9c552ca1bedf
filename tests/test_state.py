"""Results about a read-only index go to the user's state folder; readers see both places.

The manual's ablate / label / evaluate / fit-head / plot commands (docs/guide/) run against a
read-only copy of a tiny index: afterwards not a byte of the index (or of the checkout) has changed, and ``show``,
``info`` and ``plot`` read what the commands stored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import file_tree, git_status
from neurosearch.cli.app import app

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def make_read_only(directory: Path) -> None:
    """Mark the index as product (its manifest) and take away write permission (a non-root user's view)."""
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "read_only": True}, indent=1))
    for path in [directory, *directory.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def make_writable(directory: Path) -> None:
    for path in [directory, *directory.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


@pytest.fixture
def clean_openai_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                 "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_readme_commands_leave_a_read_only_index_and_the_checkout_untouched(
        small_index: Path, tmp_path: Path, monkeypatch, llm, clean_openai_env):  # noqa: F811
    from neurosearch import Index

    state = tmp_path / "state"
    monkeypatch.setenv("NEUROSEARCH_STATE", str(state))
    copy = tmp_path / "shipped"
    shutil.copytree(small_index, copy)
    # results that ship with the index: a label run and an ablation while it was still writable
    run("label", "--index", str(copy), "--base-url", llm.base_url, "--contexts", "0", "--k", "3")
    run("ablate", "k3/0", "--sentences", "8", "--seeds", "2", "--index", str(copy))
    (shipped_ablation,) = json.loads((copy / "ablations.json").read_text())["results"].values()
    assert shipped_ablation["target"]["id"] == "filter+smooth+tfidf/k3/0"
    make_read_only(copy)
    before, status = file_tree(copy), git_status()
    asked = len(llm.seen)
    try:
        run("label", "--index", str(copy), "--base-url", llm.base_url, "--contexts", "0")  # K=6 is new
        assert len(llm.seen) == asked + 6  # the shipped K=3 labels count as cached
        run("ablate", "--query", "monday", "--sentences", "8", "--seeds", "2", "--index", str(copy))
        run("ablate", "--neurons", "0:1", "--sentences", "8", "--seeds", "2", "--index", str(copy))
        run("evaluate", "--max-clusters", "1", "--methods", "filter", "--k", "3", "--sentences", "6", "--seeds", "2",
            "--index", str(copy))
        run("fit-head", "--index", str(copy), "--epochs", "0.2")
        run("plot", "distance-curve", "--index", str(copy))
        assert file_tree(copy) == before
        assert git_status() == status

        index = Index.load(copy)
        assert not index.state.writes_into_index and index.state.state_dir.parent == state
        results = index.state.state_dir
        assert (results / "labels.json").is_file() and (results / "ablations.json").is_file()
        sample = results / "evaluation-sample1"  # a sample never replaces the full run's evaluation/
        assert (sample / "results.jsonl").is_file() and (sample / "table3.md").is_file()
        assert (results / "figures" / "distance-curve.png").is_file()
        assert index.head_dir == results / "head"
        # readers merge: the shipped label and ablation, and the user's
        assert len(index.labels) == 3 + 6
        key = "filter+smooth+tfidf/k3/0"
        assert index.ablation_for("cluster", key, index.cluster(key).neurons).current.to_json() == shipped_ablation
        assert index.ablation_for("neuron", "0:1", ["0:1"]).current.target.neurons == ["0:1"]
        shown = run("show", "neuron", "0:1", "--index", str(copy))
        assert "ablation (mean" in shown.stdout and "mlm readout" in shown.stdout
        shown = run("show", "cluster", "k3/0", "--index", str(copy), "--json")
        data = json.loads(shown.stdout)
        assert data["ablation"] == shipped_ablation and data["label"]["source"] == "llm"
        info = json.loads(run("info", "--index", str(copy), "--json").stdout)
        assert info["results"]["results"] == str(results) and info["labels"] == 9
        # --state-dir wins over $NEUROSEARCH_STATE
        other = tmp_path / "other"
        run("--state-dir", str(other), "ablate", "--neurons", "1:2", "--sentences", "8", "--seeds", "2",
            "--index", str(copy))
        assert list(other.glob("*/ablations.json")) and file_tree(copy) == before
    finally:
        make_writable(copy)


def test_a_writable_index_keeps_its_results_inside(small_index: Path, tmp_path: Path):
    from neurosearch import Index

    copy = tmp_path / "own"
    shutil.copytree(small_index, copy)
    run("ablate", "--neurons", "0:1", "--sentences", "8", "--seeds", "2", "--index", str(copy))
    run("fit-head", "--index", str(copy), "--epochs", "0.2")
    index = Index.load(copy)
    assert index.state.writes_into_index and (copy / "ablations.json").is_file()
    assert index.head_dir == copy / "head"
    manifest = json.loads((copy / "manifest.json").read_text())
    assert {"head/head.json", "head/head.safetensors"} <= set(manifest["files"])  # verified like every file
