"""An index whose units are the features of an SAE: a tiny TopK SAE on the tiny random BERT's layer-1
FFN, built end to end (``build --sae``), named ``L1:fI``, searched, shown, traced and ablated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
from neurosearch.errors import NeurosearchError
from neurosearch.sae.model import SAEInfo, TopKSAE, load_sae

LAYER = 1
D_SAE = 64
K = 4


def make_sae(directory: Path, model_id: str, *, layer: int = LAYER, d_in: int = 24, site: str = "ffn",
             seed: int = 1) -> Path:
    """A random TopK SAE for the tiny model's FFN (24 wide) at ``layer``, saved in the SAELens layout."""
    sae = TopKSAE.initialised(d_in, D_SAE, K, seed=seed)
    with torch.no_grad():  # a positive encoder bias, so that every feature fires somewhere
        sae.b_enc.fill_(0.05)
    sae.info = SAEInfo(model_name=model_id, hook_name=f"encoder.layer.{layer}.intermediate", site=site, layer=layer)
    sae.save(directory)
    return directory


def config_for(tiny_model: Path, tiny_corpus: Path, sae: Path | None) -> BuildConfig:
    return BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32", sae=str(sae) if sae is not None else None),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2),
        clusters=ClusterConfig(ks=(3, 6)),
    )


@pytest.fixture(scope="module")
def model_id(tiny_model: Path) -> str:
    return str(tiny_model.resolve())


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory, model_id: str) -> Path:
    return make_sae(tmp_path_factory.mktemp("sae") / "L1", model_id)


@pytest.fixture(scope="module")
def features_index(tmp_path_factory, tiny_model: Path, tiny_corpus: Path, sae_dir: Path) -> Path:
    from neurosearch.pipeline import build_index

    out = tmp_path_factory.mktemp("features") / "idx"
    build_index(config_for(tiny_model, tiny_corpus, sae_dir), out)
    return out


def test_the_manifest_says_what_the_units_are(features_index: Path, sae_dir: Path):
    from neurosearch.format.atomic import sha256_file
    from neurosearch.index.index import Index

    manifest = json.loads((features_index / "manifest.json").read_text())
    units = manifest["units"]
    assert units["kind"] == "sae" and units["layer"] == LAYER and units["site"] == "ffn"
    assert (units["d_sae"], units["k"]) == (D_SAE, K)
    assert units["sae"]["path"] == str(sae_dir.resolve())
    assert units["sae"]["files"] == {name: sha256_file(sae_dir / name) for name in ("cfg.json", "sae_weights.safetensors")}
    assert units["sae"]["cfg"] == json.loads((sae_dir / "cfg.json").read_text())
    assert manifest["n_layers"] == 1 and manifest["neurons_per_layer"] == D_SAE and manifest["n_neurons"] == D_SAE
    assert manifest["configs"]["model"]["sae"] == str(sae_dir)
    assert manifest["stages"]["stats"]["identity"]["sae"] == units["sae"]["files"]
    index = Index.load(features_index)
    assert index.neuron_name(7) == "L1:f7" and index.neuron_index("L1:f7") == 7
    assert all(manifest["stages"][stage]["done"] for stage in ("stats", "profiles", "clusters", "search", "contexts"))


def test_a_neuron_index_records_no_units(tiny_index: Path):
    manifest = json.loads((tiny_index / "manifest.json").read_text())
    assert "units" not in manifest and "sae" not in manifest["stages"]["stats"]["identity"]


def test_feature_statistics_are_the_sae_codes_of_the_layer(features_index: Path, tiny_model: Path, tiny_corpus: Path,
                                                           sae_dir: Path):
    """neurons/mean.npy and std.npy of a features index: the moments of the SAE's codes of the layer's
    FFN activations over the counted tokens of the training documents, computed here directly."""
    from neurosearch.corpus import make_windows, training_documents
    from neurosearch.model.loading import NeuronHooks, load_model, neuron_site

    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    sae = load_sae(sae_dir)
    rows = []
    texts = list(training_documents(CorpusConfig(source=str(tiny_corpus), window=16)))
    windows = make_windows(loaded.tokenizer, texts, 0, 16)
    specials = {loaded.tokenizer.cls_token_id, loaded.tokenizer.sep_token_id, loaded.tokenizer.pad_token_id}
    with torch.inference_mode():
        for ids in windows.input_ids:
            captured = {}
            with NeuronHooks(site, lambda layer, x: captured.__setitem__(layer, x[0].clone())):
                loaded.encoder(input_ids=torch.tensor([ids]))
            keep = torch.tensor([t not in specials for t in ids])
            rows.append(sae.encode(captured[LAYER][keep]))
    codes = torch.cat(rows).double().numpy()
    mean = np.load(features_index / "neurons" / "mean.npy")
    std = np.load(features_index / "neurons" / "std.npy")
    assert mean.shape == (D_SAE,)
    np.testing.assert_allclose(mean, codes.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std, codes.std(axis=0), rtol=1e-3, atol=1e-5)
    top = np.load(features_index / "neurons" / "top_values.npy")
    np.testing.assert_allclose(top[:, 0], codes.max(axis=0), rtol=1e-5, atol=1e-6)
    assert (codes > 0).sum(axis=1).max() <= K  # zeros outside each token's top k


def test_find_show_and_json_name_features(features_index: Path):
    from neurosearch.index.index import Index

    index = Index.load(features_index)
    found = index.find("monday", kind="neurons", top=5, all_hits=True)
    assert found.results and all(hit.id.startswith("L1:f") for hit in found.results)
    clusters = index.find("monday", kind="clusters", top=3, all_hits=True)
    assert all(name.startswith("L1:f") for hit in clusters.results for name in hit.neurons)
    assert index.neuron("L1:f3").id == "L1:f3"
    with pytest.raises(NeurosearchError, match="names a neuron; this index's units are the features of an SAE at layer 1"):
        index.neuron("1:3")
    with pytest.raises(NeurosearchError, match=r"feature L1:f64 is out of range: this index holds features L1:f0 .. L1:f63"):
        index.neuron("L1:f64")
    with pytest.raises(NeurosearchError, match="feature L0:f3 is out of range"):
        index.neuron("L0:f3")


def test_cli_shows_a_feature_by_its_id_alone(features_index: Path):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    runner = CliRunner()
    alone = runner.invoke(app, ["show", "L1:f3", "--index", str(features_index)])
    assert alone.exit_code == 0, alone.output
    assert alone.output.startswith("feature L1:f3")
    named = runner.invoke(app, ["show", "neuron", "L1:f3", "--index", str(features_index), "--json"])
    assert named.exit_code == 0 and json.loads(named.output)["id"] == "L1:f3"
    found = runner.invoke(app, ["find", "monday", "--kind", "neurons", "--all", "--json", "--index", str(features_index)])
    assert found.exit_code == 0 and all(hit["id"].startswith("L1:f") for hit in json.loads(found.output)["results"])
    text = runner.invoke(app, ["find", "monday", "--all", "--index", str(features_index)], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "hits: L1:fI SAE features" in text.output
    info = json.loads(runner.invoke(app, ["info", "--index", str(features_index), "--json"]).stdout)
    assert info["units"]["kind"] == "sae" and info["units"]["layer"] == LAYER and "cfg" not in info["units"]["sae"]
    table = runner.invoke(app, ["info", "--index", str(features_index)], env={"COLUMNS": "200"}).stdout
    assert f"{D_SAE} features of a TopK SAE" in table
    wrong = runner.invoke(app, ["show", "2:3", "--index", str(features_index)])
    assert wrong.exit_code != 0 and "names a neuron" in wrong.output and "Traceback" not in wrong.output


def test_trace_reads_features(features_index: Path):
    from neurosearch.experiments.trace import Tracer
    from neurosearch.index.index import Index
    from neurosearch.model.loading import load_index_model

    index = Index.load(features_index)
    tracer = Tracer(index, load_index_model(index))
    result = tracer.trace("monday and friday")
    assert tracer.site.sae is not None and tracer.site.first_layer == LAYER
    names = [unit.id for token in result.tokens for unit in token.neurons]
    assert names and all(name.startswith("L1:f") for name in names)
    acts = tracer.activations("monday and friday")
    assert (acts.values > 0).sum(axis=1).max() <= K


def test_an_sae_that_does_not_fit_is_refused_before_the_statistics(tmp_path: Path, tiny_model: Path, tiny_corpus: Path,
                                                                  model_id: str):
    from neurosearch.pipeline import build_index

    cases = {
        "another model": (make_sae(tmp_path / "m", "bert-base-uncased"), "encodes the model 'bert-base-uncased'"),
        "another site": (make_sae(tmp_path / "s", model_id, site="hidden"), "encodes the hidden site, not ffn"),
        "another layer": (make_sae(tmp_path / "l", model_id, layer=5), "its layer 5 is not one of the site's layers 0..1"),
        "another width": (make_sae(tmp_path / "w", model_id, d_in=16), r"its d_in 16 is not the width of the ffn site \(24\)"),
    }
    for name, (sae, message) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        with pytest.raises(NeurosearchError, match=message):
            build_index(config_for(tiny_model, tiny_corpus, sae), out)
        assert not out.exists(), name
    missing = tmp_path / "none"
    with pytest.raises(NeurosearchError, match="no SAE in"):
        build_index(config_for(tiny_model, tiny_corpus, missing), tmp_path / "out-missing")


def test_an_index_of_neurons_is_not_mixed_with_features(tmp_path: Path, tiny_index: Path, tiny_model: Path,
                                                        tiny_corpus: Path, sae_dir: Path):
    from neurosearch.pipeline import build_index

    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    with pytest.raises(NeurosearchError, match="already holds an index of neurons"):
        build_index(config_for(tiny_model, tiny_corpus, sae_dir), copy)


def test_a_changed_sae_is_refused_where_the_model_runs(tmp_path: Path, features_index: Path, sae_dir: Path):
    from neurosearch.index.index import Index
    from neurosearch.model.loading import index_site, load_index_model

    index_copy, sae_copy = tmp_path / "idx", tmp_path / "sae"
    shutil.copytree(features_index, index_copy)
    shutil.copytree(sae_dir, sae_copy)
    manifest = json.loads((index_copy / "manifest.json").read_text())
    manifest["units"]["sae"]["path"] = str(sae_copy)
    (index_copy / "manifest.json").write_text(json.dumps(manifest))
    index = Index.load(index_copy)
    loaded = load_index_model(index)
    assert index_site(loaded, index).sae is not None
    cfg = json.loads((sae_copy / "cfg.json").read_text())
    cfg["neurosearch"]["fvu"] = 0.5
    (sae_copy / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(NeurosearchError, match="changed since the index was built"):
        index_site(loaded, index)


# -- ablation ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feature_site(tiny_model: Path, sae_dir: Path):
    from neurosearch.model.loading import load_model, unit_site

    config = ModelConfig(model=str(tiny_model), dtype="float32", sae=str(sae_dir))
    loaded = load_model(config, mlm=True)
    return loaded, unit_site(loaded, config)


def _ffn_outputs(loaded, site, ablator=None, raw=True):
    """The layer's FFN outputs (the module's own output, after any ablation or edit by ``ablator``,
    which sees the module's output when ``raw``, else the features) and the final hidden states."""
    from neurosearch.model.loading import NeuronHooks

    ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 12, 13, 3, 0]])
    seen = {}
    hooks = [NeuronHooks(site, ablator, raw=raw)] if ablator is not None else []
    hooks.append(NeuronHooks(site, lambda layer, x: seen.__setitem__(layer, x.clone()), raw=True))
    for hook in hooks:
        hook.__enter__()
    try:
        with torch.inference_mode():
            out = loaded.encoder(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    finally:
        for hook in reversed(hooks):
            hook.__exit__()
    return seen[0], out


def test_feature_ablation_is_sae_ablation_and_nothing_is_the_identity(feature_site):
    from neurosearch.experiments.ablation import FeatureAblator, make_ablator
    from neurosearch.sae.ablation import ablate

    loaded, site = feature_site
    means = np.linspace(0.0, 0.3, D_SAE).astype(np.float32)
    clean, clean_out = _ffn_outputs(loaded, site)
    ablator = make_ablator(site, "mean", means)
    assert isinstance(ablator, FeatureAblator)
    ablator.set_conditions([np.zeros(0, dtype=np.int64)])
    same, same_out = _ffn_outputs(loaded, site, ablator)
    assert torch.equal(same, clean) and torch.equal(same_out, clean_out)  # ablating nothing changes nothing
    features = np.array([1, 5, 9, 40])
    ablator.set_conditions([features])
    changed, changed_out = _ffn_outputs(loaded, site, ablator)
    expected = ablate(site.sae, clean, features, torch.as_tensor(means[features]))
    torch.testing.assert_close(changed, expected)
    assert not torch.equal(changed_out, clean_out)
    # the ablated features now read as their means, the others as before (the error term kept)
    codes_after = site.sae.encode(changed)
    zero = make_ablator(site, "zero", None)
    zero.set_conditions([features])
    removed, _ = _ffn_outputs(loaded, site, zero)
    torch.testing.assert_close(removed, ablate(site.sae, clean, features, 0.0))
    assert codes_after.shape[-1] == D_SAE
    with pytest.raises(NeurosearchError, match="not defined for SAE features"):
        make_ablator(site, "layer-mean", means)


def test_hooks_that_replace_features_decode_only_the_change(feature_site):
    """A hook function handed the features may return edited ones: the module's output changes by
    the decoded change (unchanged features: the output bit for bit)."""
    from neurosearch.sae.ablation import ablate

    loaded, site = feature_site
    clean, clean_out = _ffn_outputs(loaded, site)

    def run(fn):
        return _ffn_outputs(loaded, site, fn, raw=False)

    same, same_out = run(lambda layer, features: features.clone())
    assert torch.equal(same, clean) and torch.equal(same_out, clean_out)

    def zero(layer, features):
        features = features.clone()
        features[..., [2, 7]] = 0
        return features

    removed, _ = run(zero)
    torch.testing.assert_close(removed, ablate(site.sae, clean, [2, 7], 0.0), rtol=1e-5, atol=1e-6)


def test_ablating_features_runs_against_random_feature_sets(feature_site, features_index: Path, tiny_corpus: Path):
    from neurosearch.experiments.ablation import AblationConfig, run_ablation
    from neurosearch.experiments.readouts import MaskedLMReadout, OwnHeadMaskedLM
    from neurosearch.experiments.sentences import SentencePool
    from neurosearch.experiments.targets import AblationTarget

    loaded, site = feature_site
    readout = MaskedLMReadout("mlm", OwnHeadMaskedLM(loaded.model), "model")
    docs = tiny_corpus.read_text().splitlines()
    pool = SentencePool.from_documents(loaded.tokenizer, [d + "." for d in docs], max_tokens=32)
    vocab = loaded.tokenizer.get_vocab()
    target = AblationTarget("neurons", "t", [3, 17, 40], [vocab["monday"], vocab["friday"]], ["monday", "friday"])
    means = np.load(features_index / "neurons" / "mean.npy")

    def run(skip: bool, per_pass: int):
        config = AblationConfig(readouts=("mlm",), sentences=10, draws=3, batch_sentences=4, conditions_per_pass=per_pass)
        return run_ablation([readout], site, loaded.tokenizer, pool, target, config, means=means,
                            encoder=loaded.encoder, skip_clean_blocks=skip)

    result = run(True, 1)
    mlm = result.readouts["mlm"]
    assert result.target.neurons == ["L1:f3", "L1:f17", "L1:f40"]
    assert set(mlm.baselines) == {"random", "random_layer", "random_position"} and mlm.value != 0
    for stats in mlm.baselines.values():
        assert len(stats.draws) == 3
    full = run(False, 1).readouts["mlm"]  # starting at the SAE's block gives the full passes' numbers
    assert mlm.value == pytest.approx(full.value, rel=1e-5, abs=1e-7)
    stacked = run(True, 4).readouts["mlm"]
    assert stacked.value == pytest.approx(mlm.value, rel=1e-4, abs=1e-6)


def test_ablate_a_query_on_a_features_index(features_index: Path, tiny_corpus: Path):
    from neurosearch.experiments.ablation import AblationConfig
    from neurosearch.experiments.session import AblationSession
    from neurosearch.index.index import Index

    index = Index.load(features_index)
    session = AblationSession(index, AblationConfig(readouts=("mlm",), sentences=8, draws=2, batch_sentences=8))
    target = session.query_target("monday")
    result = session.run(target)
    assert result.target.neurons and all(name.startswith("L1:f") for name in result.target.neurons)
    assert set(result.readouts["mlm"].baselines) == {"random", "random_layer", "random_position"}


def test_the_report_pages_features(features_index: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["report", "--index", str(features_index), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "neuron" / f"{LAYER}_0.html").read_text()
    assert 'Feature <span class="mono">L1:f0</span>' in page and "SAE feature 0" in page


def test_explanation_scores_of_features(features_index: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    copy = tmp_path / "idx"
    shutil.copytree(features_index, copy)
    result = CliRunner().invoke(app, ["score", "--index", str(copy)])
    assert result.exit_code == 0, result.output
    units = json.loads((copy / "scores" / "simulation.json").read_text())["units"]
    assert "neuron:L1:f0" in units and not any(key.startswith("neuron:0:") for key in units)


def test_the_cli_refuses_an_sae_that_does_not_fit_in_one_line(tmp_path: Path, tiny_model: Path, tiny_corpus: Path,
                                                               model_id: str):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    runner = CliRunner()
    for sae, message in ((make_sae(tmp_path / "sae" / "width", model_id, d_in=16), "its d_in 16 is not the width"),
                         (make_sae(tmp_path / "sae" / "model", "bert-base-uncased"), "encodes the model 'bert-base-uncased'")):
        result = runner.invoke(app, ["build", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "out"),
                                     "--model", str(tiny_model), "--sae", str(sae), "-q"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"the SAE in {sae} (--sae) does not fit" in result.output and message in result.output
        assert not (tmp_path / "out").exists()
