"""The detection score: an AUC on hand cases, and ``score --detection`` on a tiny index with a tiny LM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.scores.detection import auc

runner = CliRunner()


def test_auc_counts_how_often_a_positive_outscores_a_negative():
    assert auc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auc([1.0, 3.0], [2.0, 0.0]) == 0.75
    assert auc([1.0], [1.0]) == 0.5


def test_score_detection_asks_the_language_model_and_resumes(tiny_index: Path, tmp_path: Path, monkeypatch):
    from lm.tiny_causal_lm import save_tiny_causal_lm

    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))
    monkeypatch.setattr("neurosearch.scores.detection.PROMPT", "Theme: {theme}\nText: {text}\nMatch?")
    lm = save_tiny_causal_lm(tmp_path / "lm")
    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    args = ["score", "--index", str(copy), "--max-tokens", "1500", "--detection", "--lm", str(lm),
            "--detection-units", "3", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((copy / "scores" / "detection.json").read_text())
    assert data["columns"] == ["detection_auc", "calibration_other_theme"]
    assert set(data["summary"]) == {"neurons", "k3", "k6", "tree"}
    assert len(data["units"]) == 4 * 3 and set(data["themes"]) == set(data["units"])
    values = [v for pair in data["units"].values() for v in pair if v is not None]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert data["about"]["lm"].startswith("local:")
    key = next(k for k, v in data["units"].items() if v[0] is not None)
    kind, ident = key.split(":", 1)
    shown = json.loads(runner.invoke(app, ["show", kind, ident, "--index", str(copy), "--json"]).stdout)
    assert shown["scores"]["detection_auc"] == data["units"][key][0]
    found = json.loads(runner.invoke(app, ["find", "monday", "--index", str(copy), "--json"]).stdout)
    assert all("detection_auc" in hit for hit in found["results"])

    def never(*args, **kwargs):
        raise AssertionError("asked the language model again")

    monkeypatch.setattr("neurosearch.scores.detection._answers", never)
    again = runner.invoke(app, args)  # the same run, model and prompt: every unit is stored
    assert again.exit_code == 0, again.output
    assert json.loads((copy / "scores" / "detection.json").read_text())["units"] == data["units"]


def test_a_bad_lm_spec_is_one_line_before_any_work(tiny_index: Path):
    result = runner.invoke(app, ["score", "--index", str(tiny_index), "--detection", "--lm", "http://x/v1"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "model" in lines[0], result.output
