"""The scalable clustering mode: a valid complete-linkage-style tree from kNN communities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurosearch.pipeline.clusters import build_clusters, distance_curve
from neurosearch.pipeline.linkage import cut_tree, unit_rows
from neurosearch.config import ClusterConfig
from neurosearch.errors import ConfigError


def _groups(n_groups: int = 12, per_group: int = 40, dim: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated families: each group shares 10 strong tokens, plus weak noise everywhere."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_groups), per_group)
    profiles = 0.05 * rng.random((len(labels), dim)).astype(np.float32)
    for g in range(n_groups):
        tokens = rng.choice(dim, 10, replace=False)
        profiles[np.ix_(labels == g, tokens)] += 1.0 + 0.2 * rng.random((per_group, 10), dtype=np.float32)
    order = rng.permutation(len(labels))
    return profiles[order], labels[order]


def test_scalable_tree_is_a_valid_tree_that_finds_separated_families():
    pytest.importorskip("hnswlib")
    from neurosearch.pipeline.scalable_clusters import ScalableSettings, scalable_tree

    profiles, truth = _groups()
    unit = unit_rows(profiles)
    z, facts = scalable_tree(unit, ScalableSettings(pca_dims=32, max_community=100, max_block=100))
    n = len(unit)
    assert z.shape == (n - 1, 4)
    assert np.all(np.diff(z[:, 2]) >= 0), "merges ordered by height"
    assert facts["largest_community"] <= 100 and facts["largest_block"] <= 100 and facts["blocks"] >= 5
    # every node is used once, children before parents, counts add up
    seen = set()
    sizes = {i: 1 for i in range(n)}
    for row, (a, b, _, count) in enumerate(z):
        a, b = int(a), int(b)
        assert a not in seen and b not in seen and a < n + row and b < n + row
        seen.update((a, b))
        sizes[n + row] = sizes[a] + sizes[b]
        assert count == sizes[n + row]
    labels = cut_tree(z, 12)
    pairs_same = truth[:, None] == truth[None, :]
    assert np.array_equal(labels[:, None] == labels[None, :], pairs_same), "each family is one cluster"
    # heights inside a family are exact complete-linkage diameters: the cut's clusters report them
    clusters = build_clusters(unit, z, 12, neurons_per_layer=40, config=ClusterConfig(refine=False))
    assert all(c.size == 40 for c in clusters)
    curve = distance_curve(unit, z, [6, 12, 24])
    assert curve["ks"] == [6, 12, 24]


def test_up_to_max_block_neurons_the_tree_is_exact_complete_linkage():
    """One block: the scalable tree is the exact mode's, bit for bit; blocks of several communities
    each get exact linkage of all their neurons (their merges at true complete-linkage heights)."""
    pytest.importorskip("hnswlib")
    from neurosearch.pipeline.linkage import linkage_tree
    from neurosearch.pipeline.scalable_clusters import ScalableSettings, scalable_tree

    profiles, truth = _groups(n_groups=6, per_group=30)
    unit = unit_rows(profiles)
    exact = linkage_tree(unit, max_exact=len(unit))
    z, facts = scalable_tree(unit, ScalableSettings(pca_dims=32, max_community=60, max_block=len(unit)))
    assert facts["blocks"] == 1 and np.array_equal(z, exact)
    z, facts = scalable_tree(unit, ScalableSettings(pca_dims=32, max_community=30, max_block=60))
    assert facts["blocks"] >= 3 and facts["largest_block"] <= 60
    labels = cut_tree(z, 6)
    assert np.array_equal(labels[:, None] == labels[None, :], truth[:, None] == truth[None, :])
    with pytest.raises(Exception, match="max_block"):
        scalable_tree(unit, ScalableSettings(max_community=100, max_block=50))


def test_cluster_mode_is_validated():
    with pytest.raises(ConfigError, match="mode must be one of exact, scalable, got 'fast'"):
        ClusterConfig(mode="fast")


def test_build_records_the_clustering_mode(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    pytest.importorskip("hnswlib")
    from neurosearch.pipeline import build_index
    from neurosearch.config import BuildConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig

    config = BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"),
        clusters=ClusterConfig(ks=(3, 6), mode="scalable"),
    )
    build_index(config, tmp_path / "index", until="clusters")
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["configs"]["clusters"]["mode"] == "scalable"
    assert manifest["stages"]["clusters"]["mode"] == "scalable"
    assert manifest["stages"]["clusters"]["methods"]["filter"]["communities"] >= 1
    found = json.loads((tmp_path / "index" / "methods" / "filter" / "clusters_k6.json").read_text())["clusters"]
    assert sorted(n for c in found for n in c["neurons"] + c["dropped"]) == list(range(48))
