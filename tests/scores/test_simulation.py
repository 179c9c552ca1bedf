"""The simulation score on hand-made cases: exact explanations score 1, shuffled ones about 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosearch.scores.simulation import (SimulationAccumulator, correlation, group_permutation,
                                           scores_from_sums)
from neurosearch.scores.units import UnitSet, cluster_activations, explanation_table


def test_correlation_from_sums_matches_a_hand_computed_case():
    s, a = np.array([0.0, 1.0, 2.0, 0.0]), np.array([1.0, 3.0, 5.0, 1.0])  # a = 2 s + 1: r = 1
    sums = [s.sum(), (s * s).sum(), a.sum(), (a * a).sum(), (s * a).sum()]
    assert correlation(4, *[np.array([v]) for v in sums])[0] == pytest.approx(1.0)
    b = np.array([1.0, 0.0, 1.0, 0.0])  # hand: cov = 0.5 - 0.75*0.5 = 0.125/... r = 0.4264
    sums = [s.sum(), (s * s).sum(), b.sum(), (b * b).sum(), (s * b).sum()]
    expected = np.corrcoef(s, b)[0, 1]
    assert correlation(4, *[np.array([v]) for v in sums])[0] == pytest.approx(expected)
    constant = [np.array([0.0]), np.array([0.0]), np.array([a.sum()]), np.array([(a * a).sum()]), np.array([0.0])]
    assert np.isnan(correlation(4, *constant)[0])  # no listed token occurred: undefined, not 0


def _units(n_neurons: int, tokens: np.ndarray, weights: np.ndarray, groups: list[str] | None = None) -> UnitSet:
    return UnitSet(method="m", keys=[f"neuron:0:{i}" for i in range(n_neurons)], groups=groups or ["neurons"] * n_neurons,
                   n_neurons=n_neurons, top_tokens=tokens.astype(np.int32), top_weights=weights.astype(np.float32),
                   cut_members=[], tree_children=None, neuron_mean=np.zeros(n_neurons, np.float32),
                   neuron_std=np.ones(n_neurons, np.float32))


def _run(units: UnitSet, ids: np.ndarray, activations: np.ndarray, seed: int = 0):
    """Feed windows of token ids [W, L] and activations [W, L, N] through the accumulator."""
    kept_of_id = np.arange(int(ids.max()) + 2)
    kept_of_id[-1] = int(ids.max()) + 1
    accumulator = SimulationAccumulator(units, 1, units.n_neurons, kept_of_id, group_permutation(units.groups, seed))
    valid = torch.ones(ids.shape, dtype=torch.bool)
    accumulator.begin_batch(torch.as_tensor(ids), valid, torch.zeros(ids.shape), torch.zeros(ids.shape))
    accumulator.observe(0, torch.as_tensor(activations, dtype=torch.float32))
    return scores_from_sums(accumulator.sums, top_windows=2, random_windows=2, seed=seed)


def test_a_unit_that_fires_exactly_on_its_listed_tokens_scores_one():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10, size=(6, 12))
    tokens = np.array([[2, 5, 7], [1, 3, 9]])
    weights = np.array([[3.0, 2.0, 1.0], [0.5, 0.25, 4.0]])
    table = explanation_table(_units(2, tokens, weights), 10)
    activations = np.stack([table[ids, 0], table[ids, 1] * 2.0 + 0.1], axis=-1)  # a scale and an offset
    scores = _run(_units(2, tokens, weights), ids, activations)
    assert scores.all_at_once == pytest.approx([1.0, 1.0])
    assert scores.top_and_random == pytest.approx([1.0, 1.0])


def test_shuffled_explanations_score_about_zero():
    rng = np.random.default_rng(1)
    n, vocab = 200, 300
    ids = rng.integers(0, vocab, size=(40, 50))
    tokens = np.stack([rng.choice(vocab, 5, replace=False) for _ in range(n)])
    weights = rng.uniform(0.5, 2.0, size=(n, 5))
    table = explanation_table(_units(n, tokens, weights), vocab)
    activations = table[ids] + rng.normal(0, 0.1, size=(40, 50, n))  # every unit follows its explanation, noisily
    scores = _run(_units(n, tokens, weights), ids, activations)
    assert np.nanmedian(scores.all_at_once) > 0.7
    assert abs(np.nanmean(scores.shuffled)) < 0.05


def test_the_calibration_permutation_moves_every_unit_within_its_group():
    groups = ["neurons"] * 5 + ["k2"] * 2 + ["tree"] * 4
    permutation = group_permutation(groups, 3)
    assert sorted(permutation.tolist()) == list(range(11))
    assert all(permutation[i] != i and groups[permutation[i]] == groups[i] for i in range(11))


def test_a_clusters_activation_is_the_mean_z_of_its_neurons_and_tree_nodes_add_up():
    z = np.arange(12, dtype=np.float32).reshape(4, 3)  # 4 neurons, 3 tokens
    units = _units(4, np.zeros((4 + 1 + 3, 1)), np.zeros((4 + 1 + 3, 1)))
    units.keys += ["cluster:m/k1/0", "cluster:m/tree/0", "cluster:m/tree/1", "cluster:m/tree/2"]
    units.cut_members = [np.array([1, 3])]
    units.tree_children = np.array([[0, 1], [2, 3], [4, 5]])  # node 0 = {0,1}, node 1 = {2,3}, node 2 = all
    out = cluster_activations(units, z)
    np.testing.assert_allclose(out[0], z[[1, 3]].mean(0))
    np.testing.assert_allclose(out[1], z[[0, 1]].mean(0))
    np.testing.assert_allclose(out[2], z[[2, 3]].mean(0))
    np.testing.assert_allclose(out[3], z.mean(0))
