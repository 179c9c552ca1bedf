"""``build --units sae``: the build trains a TopK SAE on one layer of the tiny random BERT over its own
corpus, indexes its features, records the training in the manifest, resumes, and keeps the SAE
inside the index (so the index can move)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from neurosearch.config import (BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, SAEConfig,
                                StatsConfig, UnitsConfig)
from neurosearch.errors import ConfigError, NeurosearchError
from neurosearch.format import layout

TRAINING = SAEConfig(k=4, expansion=2, batch_size=128, epochs=1, dead_window_tokens=200, log_seconds=0.0,
                     checkpoint_seconds=1e9)


def config_for(tiny_model: Path, tiny_corpus: Path, layer: int | None = 1, training: SAEConfig = TRAINING) -> BuildConfig:
    return BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16, heldout_share=0.2),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, methods=("filter+smooth+tfidf",), search_method="filter+smooth+tfidf"),
        clusters=ClusterConfig(ks=(3, 6)),
        concepts=False,
        units=UnitsConfig(kind="sae", layer=layer, training=training),
    )


@pytest.fixture(scope="module")
def trained_index(tmp_path_factory, tiny_model: Path, tiny_corpus: Path) -> tuple[Path, list[str]]:
    from neurosearch.pipeline import build_index
    from neurosearch.progress import SilentReporter

    lines: list[str] = []

    class Lines(SilentReporter):
        def log(self, message: str) -> None:
            lines.append(message)

    out = tmp_path_factory.mktemp("trained") / "idx"
    build_index(config_for(tiny_model, tiny_corpus), out, reporter=Lines())
    return out, lines


def test_the_build_trains_an_sae_and_indexes_its_features(trained_index):
    from neurosearch.format.manifest import Manifest

    out, lines = trained_index
    manifest = Manifest.load(out)
    units = manifest.units
    assert units["kind"] == "sae" and units["layer"] == 1 and units["d_sae"] == 48 and units["k"] == 4
    assert manifest.n_neurons == 48 and manifest.sae_layer == 1
    trained = units["sae"]["cfg"]["neurosearch"]
    assert 0.0 <= trained["fvu"] < 1.5 and 0.0 <= trained["dead_share"] <= 1.0 and trained["train_seconds"] >= 0
    assert trained["training"]["identity"]["config"] == TRAINING.identity()
    assert units["sae"]["path"] == layout.SAE_DIR  # inside the index: recorded relative to it
    assert (out / layout.SAE_DIR / "sae_weights.safetensors").is_file() and (out / layout.SAE_DIR / "train.log").is_file()
    assert not (out / layout.SAE_TRAINING_DIR).exists()  # the activations and checkpoints are gone
    assert any(line.startswith("sae: held-out FVU") for line in lines)


def test_a_rerun_reuses_the_sae_and_the_moved_index_finds_it(trained_index, tmp_path: Path, tiny_model: Path,
                                                              tiny_corpus: Path, monkeypatch):
    from neurosearch.index import Index
    from neurosearch.model.loading import index_site, load_model
    from neurosearch.pipeline import build_index
    from neurosearch.sae import train

    out, _ = trained_index
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)

    def refuse(*_args, **_kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(train, "train_sae", refuse)
    build_index(config_for(tiny_model, tiny_corpus), moved, until="search")  # resumes: nothing to train
    index = Index.load(moved)
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = index_site(loaded, index)
    assert site.sae is not None and site.first_layer == 1 and site.neurons_per_layer == 48
    # other training settings on the same index: refused before anything is trained
    with pytest.raises(NeurosearchError, match="trained with other settings"):
        build_index(config_for(tiny_model, tiny_corpus, training=replace(TRAINING, k=3)), moved, until="search")


def test_training_resumes_after_an_interruption(tmp_path: Path, tiny_model: Path, tiny_corpus: Path, monkeypatch):
    """A build stopped while training keeps its work; the rerun resumes it and ends as one run would."""
    from neurosearch.pipeline import build_index
    from neurosearch.sae import train

    real = train.train_sae
    calls = []

    def stop_once(files, out, config, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(files, out, config, stop_after_steps=2)
            raise KeyboardInterrupt
        return real(files, out, config, **kwargs)

    monkeypatch.setattr(train, "train_sae", stop_once)
    out = tmp_path / "idx"
    from neurosearch.errors import Interrupted

    with pytest.raises(Interrupted, match="during SAE training.*resume"):
        build_index(config_for(tiny_model, tiny_corpus), out, until="stats")
    assert (out / layout.SAE_TRAINING_DIR / "activations").is_dir() and not (out / layout.SAE_DIR).exists()
    build_index(config_for(tiny_model, tiny_corpus), out, until="stats")
    assert len(calls) == 2 and (out / layout.SAE_DIR / "cfg.json").is_file()
    assert "resuming at step 2" in (out / layout.SAE_DIR / "train.log").read_text()


def test_the_layer_is_checked():
    with pytest.raises(ConfigError, match="units of kind sae"):
        UnitsConfig(kind="neurons", layer=1)
    assert UnitsConfig(kind="sae").chosen_layer(6) == 2 and UnitsConfig(kind="sae").chosen_layer(24) == 8
    with pytest.raises(ConfigError, match="outside the site's 2 layers"):
        UnitsConfig(kind="sae", layer=5).chosen_layer(2)


def test_the_cli_trains_and_says_bad_choices_in_one_line(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    runner = CliRunner()
    base = ["build", "--corpus", str(tiny_corpus), "--model", str(tiny_model), "-q", "--dtype", "float32",
            "--no-wordnet"]
    for extra, message in ((["--units", "atoms"], "--units must be neurons or sae"),
                           (["--units", "sae", "--sae-layer", "7"], "outside the site's 2 layers"),
                           (["--sae-layer", "1"], "units of kind sae"),
                           (["--sae", str(tmp_path), "--sae-layer", "1"], "give one of them")):
        result = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), *extra])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert message in result.output, result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "idx"), "--units", "sae", "--sae-layer", "0",
                                 "--sae-expansion", "2", "--sae-k", "4", "--sae-epochs", "1", "--until", "stats",
                                 "--heldout-share", "0.2"])
    assert result.exit_code == 0, result.output
    assert "48 SAE features of layer 0" in result.output
    record = json.loads((tmp_path / "idx" / "manifest.json").read_text())["units"]
    assert record["layer"] == 0 and record["sae"]["path"] == "sae"


def test_verify_checks_the_trained_sae(trained_index, tmp_path: Path):
    """``verify`` passes on the index with its SAE inside, and fails when the SAE's weights change."""
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    out, _ = trained_index
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--index", str(copy)])
    assert result.exit_code == 0, result.output
    weights = copy / layout.SAE_DIR / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    result = runner.invoke(app, ["verify", "--index", str(copy)])
    assert result.exit_code != 0 and "sae_weights.safetensors" in result.output, result.output


def test_info_says_how_well_the_sae_reconstructs(trained_index):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    out, _ = trained_index
    result = CliRunner().invoke(app, ["info", "--index", str(out), "--json"])
    assert result.exit_code == 0, result.output
    sae = json.loads(result.output)["units"]["sae"]
    assert "cfg" not in sae and 0 <= sae["fvu"] < 1.5 and 0 <= sae["dead_share"] <= 1 and sae["path"] == "sae"
    result = CliRunner().invoke(app, ["info", "--index", str(out)])
    text = "".join(result.output.replace("│", " ").split())  # the table folds long values over lines
    assert f"held-outFVU{sae['fvu']:.3f}" in text
