"""``neurosearch score`` on a tiny index: every unit scored on held-out text, shown by find and show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.cli.app import app

runner = CliRunner()


def _one_line_error(result, fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def scored(tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("scored") / "index"
    shutil.copytree(tiny_index, copy)
    result = runner.invoke(app, ["score", "--index", str(copy), "--max-tokens", "2000", "--json"])
    assert result.exit_code == 0, result.output
    return copy


def test_every_unit_is_scored_on_held_out_documents(scored: Path):
    data = json.loads((scored / "scores" / "simulation.json").read_text())
    manifest = json.loads((scored / "manifest.json").read_text())
    assert data["about"]["documents"] == "held out" and data["about"]["heldout_share"] == manifest["corpus"]["heldout_share"]
    n = manifest["n_layers"] * manifest["neurons_per_layer"]
    groups = data["summary"]
    assert set(groups) == {"neurons", "k3", "k6", "tree"}
    assert groups["neurons"]["simulation_score"]["units"] == n and groups["tree"]["simulation_score"]["units"] == n - 1
    assert len(data["units"]) == n + 3 + 6 + n - 1
    assert data["columns"] == ["simulation_score", "simulation_top_random", "calibration_shuffled"]


def test_find_and_show_carry_the_scores(scored: Path):
    found = json.loads(runner.invoke(app, ["find", "monday", "--index", str(scored), "--json"]).stdout)
    assert found["results"] and all("simulation_score" in hit for hit in found["results"])
    assert any(hit["simulation_score"] is not None for hit in found["results"])
    table = runner.invoke(app, ["find", "monday", "--index", str(scored)]).stdout
    assert " sim " in table and "held-out text" in table
    hit = found["results"][0]
    shown = json.loads(runner.invoke(app, ["show", hit["kind"], hit["id"], "--index", str(scored), "--json"]).stdout)
    assert shown["scores"]["simulation_score"] == hit["simulation_score"]
    assert "explained  simulation" in runner.invoke(app, ["show", hit["kind"], hit["id"], "--index", str(scored)]).stdout


def test_find_filters_by_the_simulation_score(scored: Path):
    found = json.loads(runner.invoke(app, ["find", "monday", "--index", str(scored), "--json",
                                           "--min-simulation", "1.01"]).stdout)
    assert found["results"] == [] and any("explanation scored below 1.01" in note for note in found["notes"])


def test_an_unscored_index_says_what_to_do(tiny_index: Path):
    _one_line_error(runner.invoke(app, ["find", "monday", "--index", str(tiny_index), "--min-simulation", "0.2"]),
                    "run `neurosearch score` first")


def test_an_index_without_held_out_documents_needs_another_corpus(tiny_model: Path, tiny_corpus: Path, tmp_path: Path):
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
    from neurosearch.pipeline import build_index

    out = tmp_path / "index"
    build_index(BuildConfig(model=ModelConfig(model=str(tiny_model), dtype="float32"),
                            corpus=CorpusConfig(source=str(tiny_corpus), window=16, max_docs=60, heldout_share=0.0),
                            stats=StatsConfig(batch_tokens=256, shard_docs=30),
                            profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"),
                            clusters=ClusterConfig(ks=(3,)), concepts=False), out, until="search")
    _one_line_error(runner.invoke(app, ["score", "--index", str(out)]), "--corpus")
    own = tmp_path / "own.txt"
    own.write_text("\n".join(tiny_corpus.read_text().splitlines()[:60]) + "\n")
    _one_line_error(runner.invoke(app, ["score", "--index", str(out), "--corpus", str(own)]),
                    "this index was built from these documents")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(tiny_corpus.read_text().splitlines()[100:160]) + "\n")
    result = runner.invoke(app, ["score", "--index", str(out), "--corpus", str(other), "--max-tokens", "500", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["about"]["documents"] == "all (not the index's corpus)"
