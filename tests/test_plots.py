"""Every figure writes a PNG of the documented size from tiny inputs; the text Fig. 5 is exact."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neurosearch import plots
from neurosearch.neuron_layers import neuron_layer_text


def _assert_png(path, figsize):
    from matplotlib.image import imread

    assert path.exists() and path.stat().st_size > 1000
    img = imread(path)
    w, h = figsize
    assert img.shape[:2] == (round(h * plots.DPI), round(w * plots.DPI))
    assert img.std() > 0.01  # something was drawn
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _results(raw: list[dict]) -> list:
    from neurosearch.format.results import AblationResult

    return [AblationResult.from_json(r) for r in raw]


def _result(i: int, change: float, k: int = 50) -> dict:
    base = {"mean_pct": 1.0, "std_pct": 0.3, "z": 5.0, "p": 0.01, "seeds": 5, "losses": [3.0] * 5}
    return {"target": {"kind": "cluster", "id": f"filter/k{k}/{i}", "neurons": ["0:1"]},
            "method": "filter", "k": k, "change_pct": change, "control_change_pct": 0.5,
            "baselines": {"random": base, "random_layer": dict(base, mean_pct=1.5),
                          "random_position": dict(base, mean_pct=0.5)}}


def test_import_does_not_load_matplotlib():
    code = ("import sys, neurosearch.plots, neurosearch.experiments.evaluation; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_distance_curve(tmp_path):
    curves = {m: {"k": [10, 50, 200], "avg_max": [1.2 - j / 10, 1.0, 0.8],
                  "avg_mean": [0.8, 0.6, 0.5]} for j, m in enumerate(["filter+tfidf", "filter"])}
    out = plots.plot_distance_curve(curves, tmp_path / "sub" / "fig2.png")
    _assert_png(out, plots.FIGSIZES["distance_curve"])


@pytest.mark.parametrize("n", [3, 60])  # grouped bars, and the many-cluster curve style
def test_cluster_losses(tmp_path, n):
    results = [_result(i, float(i % 7)) for i in range(n)] + [_result(0, 9.0, k=200)]
    results[1]["change_pct"] = None  # a failed cluster must not break the sort
    del results[2]["baselines"]["random"]
    out = plots.plot_cluster_losses(_results(results), tmp_path / "fig4.png", k=50)
    _assert_png(out, plots.FIGSIZES["cluster_losses"])


def test_cluster_losses_unknown_k(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_cluster_losses(_results([_result(0, 1.0)]), tmp_path / "x.png", k=7)


def test_cluster_neurons(tmp_path):
    out = plots.plot_cluster_neurons(["0:5", "2:5", "2:7", "3:9"], 4, 16, tmp_path / "fig5.png",
                                     title="filter/k50/3")
    _assert_png(out, plots.FIGSIZES["cluster_neurons"])


def test_token_pca(tmp_path):
    rng = np.random.default_rng(0)
    clusters = [(f"cluster {c}", [f"t{c}{j}" for j in range(6)], rng.normal(c, 1, (6, 8)))
                for c in range(3)]
    out = plots.plot_token_pca(clusters, tmp_path / "fig3.png")
    _assert_png(out, plots.FIGSIZES["token_pca"])


def test_pca_2d_keeps_planar_geometry():
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(20, 2)) * [5.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(10, 2)))
    xy = plots.pca_2d(plane @ basis.T + 3.0)
    d_in = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    d_out = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.allclose(d_in, d_out)


def test_neuron_layer_text():
    text = neuron_layer_text(["0:5", "2:5", "2:7", "3:5", "3:9"], 4, width=10)
    assert text.splitlines() == [
        "5 neurons in 3 of 4 layers",
        "layer 0 | 1 █████",
        "layer 1 | 0",
        "layer 2 | 2 ██████████",
        "layer 3 | 2 ██████████",
        "3 distinct indices, 1 in more than one layer",
        "  index 5 in 3 layers: 0,2,3",
    ]


def test_bad_neuron_name():
    with pytest.raises(ValueError):
        neuron_layer_text(["12"], 4)
