"""Clustering on tiny hand-made profile matrices (fast, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import is_valid_linkage
from scipy.spatial.distance import squareform

from neurosearch.format.clusters import Cluster
from neurosearch.pipeline.clusters import build_clusters, distance_curve, refine
from neurosearch.pipeline.linkage import condensed_cosine, cut_tree, linkage_tree, unit_rows
from neurosearch.config import ClusterConfig


def three_groups(seed: int = 0, per_group: int = 4, noise: float = 0.05) -> np.ndarray:
    """Groups around axes e0, e1 and e1+e2*0.6: groups 1 and 2 are the two closest."""
    rng = np.random.default_rng(seed)
    centres = np.array(
        [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 1, 0.6, 0, 0, 0]], dtype=np.float64
    )
    rows = [c + noise * rng.random((per_group, 6)) for c in centres]
    return np.concatenate(rows).astype(np.float32)


def direct_cosine_distances(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    n = x.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j])
            cos = x[i] @ x[j] / (ni * nj) if ni > 0 and nj > 0 else 0.0
            out[i, j] = 0.0 if i == j else 1.0 - cos
    return out


def test_unit_rows_normalises_and_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    u = unit_rows(x)
    assert u.dtype == np.float32
    np.testing.assert_allclose(u, [[0.6, 0.8], [0, 0], [-1, 0]], atol=1e-7)


def test_condensed_cosine_matches_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((13, 7)).astype(np.float32)
    x[5] = 0.0  # an empty profile: distance 1 to everything
    got = squareform(condensed_cosine(unit_rows(x)))
    np.testing.assert_allclose(got, direct_cosine_distances(x), atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 2.0


def test_condensed_cosine_small_blocks(monkeypatch):
    import neurosearch.pipeline.linkage as clustering

    monkeypatch.setattr(clustering, "_BLOCK_BYTES", 4 * 13 * 3)  # 3 rows per block
    x = np.random.default_rng(2).standard_normal((13, 5)).astype(np.float32)
    calls = []
    got = clustering.condensed_cosine(unit_rows(x), progress=lambda *a: calls.append(a))
    np.testing.assert_allclose(squareform(got), direct_cosine_distances(x), atol=1e-6)
    assert calls[-1] == ("distances", 13, 13) and len(calls) == 5


def test_cut_one_tree_at_two_k():
    unit = unit_rows(three_groups())
    z = linkage_tree(unit)
    assert is_valid_linkage(z) and z.shape == (11, 4)
    assert cut_tree(z, 3).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert cut_tree(z, 2).tolist() == [0] * 4 + [1] * 8
    assert cut_tree(z, 1).tolist() == [0] * 12
    assert sorted(cut_tree(z, 12).tolist()) == list(range(12))


def test_cut_gives_exactly_k_with_tied_heights():
    # Four identical pairs: all merge heights tie, fcluster(maxclust) could not give every k.
    unit = unit_rows(np.repeat(np.eye(4, dtype=np.float32), 2, axis=0))
    z = linkage_tree(unit)
    for k in range(1, 9):
        labels = cut_tree(z, k)
        assert len(set(labels.tolist())) == k
        assert labels[0] == 0 and labels.max() == k - 1


@pytest.mark.parametrize("k", [0, 13, -1])
def test_cut_rejects_bad_k(k):
    z = linkage_tree(unit_rows(three_groups()))
    with pytest.raises(ValueError, match="1 <= k <= 12"):
        cut_tree(z, k)


def test_refine_drops_exactly_the_planted_outlier():
    rng = np.random.default_rng(3)
    base = np.zeros(8)
    base[0] = 1.0
    members = base + 0.02 * rng.random((6, 8))
    outlier = np.zeros(8)
    outlier[0], outlier[5] = 0.5, 1.0  # cosine ~0.45 to the others
    unit = unit_rows(np.vstack([members[:3], outlier, members[3:]]))
    keep = refine(unit, 0.6)
    assert keep.tolist() == [True, True, True, False, True, True, True]


def test_refine_keeps_tight_cluster_and_stops_at_one():
    tight = unit_rows(np.ones((5, 3)) + 0.01 * np.arange(15).reshape(5, 3))
    assert refine(tight).all()
    spread = unit_rows(np.eye(4))  # every member 0.87+ from the centre
    assert refine(spread).sum() == 1


def test_build_clusters_top_tokens_and_layers():
    profiles = three_groups()
    profiles[:4, 3] = 0.5  # group 0 also fires on token 3, less than on token 0
    unit = unit_rows(profiles)
    z = linkage_tree(unit)
    config = ClusterConfig(top_tokens=2)
    clusters = build_clusters(unit, z, 3, neurons_per_layer=6, config=config)
    assert [c.id for c in clusters] == [0, 1, 2]
    first = clusters[0]
    assert first.neurons == [0, 1, 2, 3] and first.dropped == []
    assert first.top_tokens == [0, 3]
    expected = unit[:4].mean(axis=0)
    np.testing.assert_allclose(first.top_weights, expected[[0, 3]], rtol=1e-5)
    assert first.layer_sizes == {0: 4}
    assert clusters[2].layer_sizes == {1: 4}
    d = direct_cosine_distances(profiles[:4])[np.triu_indices(4, 1)]
    assert first.max_distance == pytest.approx(d.max(), abs=1e-6)
    assert first.avg_distance == pytest.approx(d.mean(), abs=1e-6)


def test_build_clusters_refines_and_round_trips_json():
    profiles = np.vstack([np.tile([1.0, 0.0, 0.0], (4, 1)), [[0.0, 0.0, 1.0]]])
    profiles[:4] += 0.01 * np.arange(12).reshape(4, 3)
    unit = unit_rows(profiles)
    z = linkage_tree(unit)
    (cluster,) = build_clusters(unit, z, 1, neurons_per_layer=10, config=ClusterConfig(refine=True))
    assert cluster.neurons == [0, 1, 2, 3] and cluster.dropped == [4]
    (raw,) = build_clusters(unit, z, 1, neurons_per_layer=10, config=ClusterConfig(refine=False))
    worst = direct_cosine_distances(profiles)[:4, 4].max()
    assert raw.dropped == [] and raw.max_distance == pytest.approx(worst, abs=1e-6)
    back = Cluster.from_json(json.loads(json.dumps(cluster.to_json())))
    assert back == cluster


def test_distance_curve_matches_brute_force_and_decreases():
    profiles = three_groups(per_group=5, noise=0.3)
    unit = unit_rows(profiles)
    z = linkage_tree(unit)
    full = direct_cosine_distances(profiles)
    ks = [1, 2, 3, 5, 8, 15]
    curve = distance_curve(unit, z, ks + [99])
    assert curve["ks"] == ks
    for key in ("avg_max_distance", "avg_mean_distance", "singletons"):
        assert len(curve[key]) == len(ks)
    for k, got_max, got_mean in zip(ks, curve["avg_max_distance"], curve["avg_mean_distance"]):
        labels = cut_tree(z, k)
        maxes, means = [], []
        for c in range(k):
            idx = np.flatnonzero(labels == c)
            pair = full[np.ix_(idx, idx)][np.triu_indices(len(idx), 1)]
            maxes.append(pair.max() if pair.size else 0.0)
            means.append(pair.mean() if pair.size else 0.0)
        assert got_max == pytest.approx(np.mean(maxes), abs=1e-6)
        assert got_mean == pytest.approx(np.mean(means), abs=1e-5)
    assert curve["avg_max_distance"] == sorted(curve["avg_max_distance"], reverse=True)
    assert curve["avg_mean_distance"][-1] == 0.0 and curve["singletons"][-1] == 15


def test_prototype_tree_above_max_exact():
    rng = np.random.default_rng(4)
    profiles = np.repeat(np.eye(3), 10, axis=0) + 0.1 * rng.random((30, 3))
    unit = unit_rows(profiles)
    z = linkage_tree(unit, max_exact=10, prototypes=12, seed=0)
    assert is_valid_linkage(z) and z.shape == (29, 4)
    assert np.all(np.diff(z[:, 2]) >= 0)  # attachments at 0, then the prototypes' tree
    assert cut_tree(z, 3).tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert len(set(cut_tree(z, 20).tolist())) == 20


def test_linkage_heights_match_scipy_complete_linkage():
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    x = np.random.default_rng(5).random((40, 9)).astype(np.float32)
    z = linkage_tree(unit_rows(x))
    ref = linkage(pdist(x.astype(np.float64), "cosine"), method="complete")
    np.testing.assert_allclose(z[:, 2], ref[:, 2], atol=1e-6)
    for k in (2, 5, 17):
        from scipy.cluster.hierarchy import cut_tree as scipy_cut

        ours, theirs = cut_tree(z, k), scipy_cut(ref, n_clusters=k)[:, 0]
        assert len({(a, b) for a, b in zip(ours, theirs)}) == k  # same partition
