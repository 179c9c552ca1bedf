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
    monkeypatch.setattr("neurosearch.scores.detection._surprisal", never)
    again = runner.invoke(app, args)  # the same run, model and prompt: every unit is stored
    assert again.exit_code == 0, again.output
    assert json.loads((copy / "scores" / "detection.json").read_text())["units"] == data["units"]
    other_rule = runner.invoke(app, [*args, "--detection-rule", "yes-no"])  # another rule: asked, not reused
    assert other_rule.exit_code == 1 and "asked the language model again" in repr(other_rule.exception)


def test_the_surprisal_rule_scores_how_much_likelier_the_theme_makes_the_text():
    """Hand case: a fake model whose log-probability of a text is -1 per word, +1 per word that
    the prompt names; the gain is the count of the theme's words in the text."""
    from neurosearch.scores.detection import NEUTRAL, THEMED, _surprisal

    class Fake:
        def continuation_logprobs(self, prompt, continuations):
            from neurosearch.lm.base import Scored

            named = set(prompt.replace(":", " ").split()) if prompt != NEUTRAL else set()
            return [Scored(c, sum(1.0 if w in named else -1.0 for w in c.split())) for c in continuations]

    assert THEMED.format(theme="x") != NEUTRAL
    gains = _surprisal(Fake(), ["monday friday", "red"], ["on monday and friday", "a red car", "nothing"])
    assert gains == [4.0, 0.0, 0.0, 0.0, 2.0, 0.0]


def test_an_unknown_detection_rule_is_refused_before_any_work(tiny_index: Path):
    result = runner.invoke(app, ["score", "--index", str(tiny_index), "--detection", "--detection-rule", "vibes"])
    assert result.exit_code == 1 and "detection rule" in result.stderr


def test_a_bad_lm_spec_is_one_line_before_any_work(tiny_index: Path):
    result = runner.invoke(app, ["score", "--index", str(tiny_index), "--detection", "--lm", "http://x/v1"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "model" in lines[0], result.output
