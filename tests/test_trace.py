"""``trace``: activations read at the right pieces, z against the corpus statistics, clusters as mean z."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.cli.trace_render import marked_text, unit_view
from neurosearch.errors import NeurosearchError
from neurosearch.experiments.trace import Piece, TraceConfig, Tracer, _top_rows, resolve_unit
from neurosearch.index import Index
from neurosearch.model.loading import NeuronHooks, load_index_model, neuron_site

runner = CliRunner()
TEXT = "the dog and the cat on monday . red green blue ."


@pytest.fixture(scope="module")
def tracer(tiny_index: Path) -> Tracer:
    index = Index.load(tiny_index)
    return Tracer(index, load_index_model(index), TraceConfig(top=3))


def _manual(tracer: Tracer, ids: list[int]) -> np.ndarray:
    """Every neuron at every piece of one window [CLS] ids [SEP], read with the hooks directly."""
    loaded = tracer.loaded
    site = neuron_site(loaded.encoder, tracer.index.manifest.site)
    seen: dict[int, torch.Tensor] = {}
    window = torch.tensor([[loaded.tokenizer.cls_token_id, *ids, loaded.tokenizer.sep_token_id]])
    with NeuronHooks(site, lambda layer, x: seen.__setitem__(layer, x[0, 1:-1].clone())), torch.inference_mode():
        loaded.encoder(input_ids=window, attention_mask=torch.ones_like(window))
    return torch.cat([seen[layer] for layer in range(site.n_layers)], dim=1).numpy()


def test_activations_are_the_hooked_values_and_z_uses_the_corpus_mean_and_std(tracer: Tracer):
    acts = tracer.activations(TEXT)
    ids = tracer.loaded.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert [p.token for p in acts.pieces] == tracer.loaded.tokenizer.convert_ids_to_tokens(ids)
    np.testing.assert_allclose(acts.values, _manual(tracer, ids), rtol=1e-5, atol=1e-6)
    mean = np.load(tracer.index.path / "neurons" / "mean.npy")
    std = np.load(tracer.index.path / "neurons" / "std.npy")
    np.testing.assert_allclose(acts.z, (acts.values - mean) / std, rtol=1e-4, atol=1e-4)
    assert TEXT[acts.pieces[2].start : acts.pieces[2].end] == "and"


def test_a_long_text_is_cut_into_the_builds_windows(tracer: Tracer):
    text = " ".join(["monday", "red", "dog", "five"] * 9)  # 36 pieces; the tiny index's windows hold 14
    assert tracer.window == 16
    acts = tracer.activations(text)
    ids = tracer.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(acts.pieces) == 36
    for start in (0, 14, 28):
        np.testing.assert_allclose(acts.values[start : start + 14], _manual(tracer, ids[start : start + 14]),
                                   rtol=1e-5, atol=1e-6)


def test_tokens_list_their_strongest_neurons_and_clusters_by_mean_z(tracer: Tracer):
    result = tracer.trace(TEXT)
    acts = tracer.activations(TEXT)
    clusters = tracer.index.clusters(tracer.method, tracer.k)
    assert len(result.tokens) == len(acts.pieces) and result.k == 6
    for row, token in enumerate(result.tokens):
        assert len(token.neurons) == 3 and len(token.clusters) == 3
        best = np.sort(acts.z[row])[::-1][:3]
        np.testing.assert_allclose([u.z for u in token.neurons], best, rtol=1e-5)
        for unit in token.neurons:
            flat = tracer.index.neuron_index(unit.id)
            assert unit.value == pytest.approx(float(acts.values[row, flat]))
            assert unit.label == tracer.index.neuron(unit.id, tracer.method).label
        means = sorted((float(acts.z[row, c.neurons].mean()) for c in clusters), reverse=True)[:3]
        np.testing.assert_allclose([u.z for u in token.clusters], means, rtol=1e-5)
        top = token.clusters[0]
        members = clusters[int(top.id.rsplit("/", 1)[1])].neurons
        assert top.size == len(members)
        assert tracer.index.neuron_index(top.top_neuron) == members[int(np.argmax(acts.z[row, members]))]


def test_nearly_constant_neurons_are_not_ranked(tracer: Tracer, tiny_index: Path):
    index = Index.load(tiny_index)
    std = np.load(tiny_index / "neurons" / "std.npy")
    cutoff = float(np.sort(std)[len(std) // 2])  # the quieter half of the neurons
    picky = Tracer(index, tracer.loaded, TraceConfig(top=5, kind="neurons", min_std=cutoff))
    result = picky.trace(TEXT)
    for token in result.tokens:
        assert token.clusters == []
        assert all(std[index.neuron_index(u.id)] >= cutoff for u in token.neurons)


def test_one_unit_along_the_text(tracer: Tracer):
    acts = tracer.activations(TEXT)
    neuron = tracer.trace_unit(TEXT, "1:3")
    flat = tracer.index.neuron_index("1:3")
    np.testing.assert_allclose(neuron.z, acts.z[:, flat], rtol=1e-5)
    np.testing.assert_allclose(neuron.values, acts.values[:, flat], rtol=1e-5)
    cluster = tracer.trace_unit(TEXT, "k3/1")
    members = tracer.index.clusters(tracer.method, 3)[1].neurons
    assert cluster.id == f"{tracer.method}/k3/1" and cluster.values == [None] * len(acts.pieces)
    np.testing.assert_allclose(cluster.z, acts.z[:, members].mean(axis=1), rtol=1e-5)
    data = cluster.to_json()
    assert data["version"] == 1 and data["unit"]["kind"] == "cluster" and len(data["unit"]["neurons"]) == len(members)
    assert set(data["tokens"][0]) == {"index", "token", "text", "start", "end", "z", "value", "top_neuron"}


def test_json_contract(tracer: Tracer):
    data = tracer.trace(TEXT).to_json()
    json.dumps(data)
    assert data["version"] == 1 and data["method"] == tracer.method and data["k"] == 6
    token = data["tokens"][0]
    assert {"index", "token", "text", "start", "end", "neurons", "clusters"} <= set(token)
    assert set(token["neurons"][0]) == {"kind", "id", "z", "value", "label", "label_source"}
    assert set(token["clusters"][0]) == {"kind", "id", "z", "size", "top_neuron", "label", "label_source"}


def test_bad_input_is_refused(tracer: Tracer, tiny_index: Path):
    with pytest.raises(NeurosearchError, match="empty"):
        tracer.trace("   ")
    with pytest.raises(NeurosearchError, match="at most 5"):
        Tracer(tracer.index, tracer.loaded, TraceConfig(max_tokens=5)).trace(TEXT)
    with pytest.raises(NeurosearchError, match="out of range"):
        resolve_unit(tracer.index, "9:0")
    with pytest.raises(NeurosearchError, match="does not exist"):
        resolve_unit(tracer.index, "k3/7")
    with pytest.raises(NeurosearchError, match="--top"):
        TraceConfig(top=0).validate()


def test_top_rows_hand_case():
    scores = np.array([0.5, -np.inf, 2.0, 2.0, 1.0])
    assert _top_rows(scores, 3) == [2, 3, 4]
    assert _top_rows(scores, 10) == [2, 3, 4, 0]
    assert _top_rows(np.array([-np.inf]), 2) == []


def test_marks_survive_without_colour():
    text = "playing on Monday"
    pieces = [Piece(0, "play", "play", 0, 4), Piece(1, "##ing", "ing", 4, 7), Piece(2, "on", "on", 8, 10),
              Piece(3, "monday", "Monday", 11, 17)]
    assert marked_text(text, pieces, [3.0, 2.5, 0.1, 4.0], 2.0).plain == "[[playing]] on [[Monday]]"
    assert marked_text(text, pieces, [3.0, 0.0, 0.1, 0.0], 2.0).plain == "[[play]]ing on Monday"
    assert marked_text("a\x1b[2Jb", [Piece(0, "a", "a", 0, 1)], [0.0], 2.0).plain == "a [2Jb"
    two_lines = [Piece(0, "a", "a", 0, 1), Piece(1, "b", "b", 2, 3)]
    assert marked_text("a\nb", two_lines, [3.0, 3.0], 2.0).plain == "[[a]]\n[[b]]"


def test_cli_trace_and_unit_view(tiny_index: Path):
    result = runner.invoke(app, ["trace", TEXT, "--index", str(tiny_index), "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["tokens"]) == len(TEXT.split()) and len(data["tokens"][0]["neurons"]) == 2
    shown = runner.invoke(app, ["trace", TEXT, "--index", str(tiny_index), "--unit", "0:1", "--mark", "-100"],
                          env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert "[[the]] [[dog]] [[and]] [[the]] [[cat]]" in shown.stdout
    assert "neuron 0:1" in shown.stdout and "█" in shown.stdout


def test_cli_refuses_bad_units_and_files_before_loading_the_model(tiny_index: Path, tmp_path: Path, monkeypatch):
    import neurosearch.model.loading as loading

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_index_model", no_model)
    for args, fragment in [(["x", "--unit", "7:7"], "out of range"), (["x", "--unit", "k9/1"], "K=9"),
                           (["--file", str(tmp_path / "missing.txt")], "no such file"), ([], "one of them"),
                           (["x", "--kind", "all"], "--kind")]:
        result = runner.invoke(app, ["trace", *args, "--index", str(tiny_index)])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("neurosearch: error:") and fragment in lines[0], lines


def test_unit_view_renders_for_a_cluster(tracer: Tracer):
    from rich.console import Console

    console = Console(width=80, no_color=True, record=True)
    console.print(unit_view(tracer.trace_unit(TEXT, "k6/0"), 0.0, 80))
    assert "mean z of its" in console.export_text()


def test_the_cli_modules_import_neither_torch_nor_numpy():
    code = ("import sys; import neurosearch.cli.app; "
            "bad = [m for m in ('torch', 'numpy', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
