"""Nothing destructive without asking: a worse head never replaces a fitted one, a sample never replaces a full run."""

from __future__ import annotations

import json
from pathlib import Path

from battery.battery_kit import cli, tree_digest


def test_a_worse_head_does_not_replace_the_fitted_one_unless_forced(index_copy: Path):
    cli("fit-head", "--index", index_copy, "--epochs", "1").ok()
    head = index_copy / "head"
    fitted = tree_digest(head)
    stored = json.loads((head / "head.json").read_text())["heldout_loss"]
    # a barely trained head (a learning rate that moves nothing): held-out loss above the fitted one
    line = cli("fit-head", "--index", index_copy, "--epochs", "0.05", "--lr", "1e-9").error_line()
    assert "not better" in line and "--force" in line
    assert tree_digest(head) == fitted
    out = cli("fit-head", "--index", index_copy, "--epochs", "0.05", "--lr", "1e-9", "--force").ok().stdout
    assert "held-out masked loss" in out
    assert json.loads((head / "head.json").read_text())["heldout_loss"] > stored


def test_a_better_head_replaces_it_and_says_what_it_replaced(index_copy: Path):
    cli("fit-head", "--index", index_copy, "--epochs", "0.05", "--lr", "1e-9").ok()
    out = cli("fit-head", "--index", index_copy, "--epochs", "1").ok().stdout
    assert "the head it replaced" in out
    record = json.loads((index_copy / "head" / "head.json").read_text())
    assert record["heldout_loss"] < record["replaced_heldout_loss"]


def test_an_evaluate_sample_writes_its_own_folder(index_copy: Path):
    full = index_copy / "evaluation"
    full.mkdir()
    (full / "table3.md").write_text("the full run's table\n")
    before = tree_digest(full)
    cli("evaluate", "--index", index_copy, "--methods", "filter", "--k", "3", "--max-clusters", "1",
        "--sentences", "4", "--seeds", "2").ok()
    assert tree_digest(full) == before
    sample = index_copy / "evaluation-sample1"
    assert (sample / "table3.md").is_file() and len((sample / "results.jsonl").read_text().splitlines()) == 1
