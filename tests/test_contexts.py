"""The contexts stage: top-token means and strongest occurrences, by hand and against Eq. 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosearch.pipeline.contexts import ContextAccumulator, plan_slots, summarise
CLS, SEP, PAD = 2, 3, 0


def test_plan_slots_pairs_each_neuron_with_its_tokens_and_its_clusters_tokens():
    top = np.array([[0, 1], [2, 0], [1, 2]])
    slots = plan_slots(top, [([0, 2], [3])], n_kept=4)
    pairs = sorted(zip(slots.neuron.tolist(), slots.row.tolist()))
    assert pairs == [(0, 0), (0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 2), (2, 3)]
    assert slots.lookup([2, 0], [3, 1]).tolist() == [pairs.index((2, 3)), pairs.index((0, 1))]


@pytest.mark.parametrize("path", ["numba", "torch"])
def test_accumulator_by_hand(path: str):
    """One layer of two neurons over two documents; kept tokens 5 and 6 (7 is not kept)."""
    # doc 0: [CLS] 5 6 5 [SEP] ; doc 1: [CLS] 6 7 [SEP] [PAD]
    ids = torch.tensor([[CLS, 5, 6, 5, SEP], [CLS, 6, 7, SEP, PAD]])
    valid = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=torch.bool)
    docs = torch.tensor([[0] * 5, [1] * 5])
    pos = torch.tensor([[-1, 0, 1, 2, 3], [-1, 0, 1, 2, 3]])
    x = torch.tensor([
        [[9.0, 9.0], [1.0, 2.0], [3.0, -1.0], [5.0, 0.0], [9.0, 9.0]],
        [[9.0, 9.0], [0.5, 4.0], [-2.0, 1.0], [9.0, 9.0], [9.0, 9.0]],
    ])
    top = np.array([[0, 1], [1, 0]])  # kept rows: 0 = token 5, 1 = token 6
    slots = plan_slots(top, [([0, 1], [1])], n_kept=2)
    acc = ContextAccumulator(slots, kept_ids=[5, 6], vocab_size=10, n_layers=1, width=2)
    if path == "torch":
        acc._kernel = None
    else:
        pytest.importorskip("numba")
        assert acc._kernel is not None
    acc.begin_batch(ids, valid, docs, pos)
    acc.observe(0, x)
    assert acc.counts.tolist() == [2, 2]
    mean, std = np.array([1.0, 0.0]), np.array([2.0, 1.0])
    out = summarise(acc, slots, top, [([0, 1], [1])], mean, std, context_tokens=2)
    # neuron 0: token 5 -> (1+5)/2 = 3 (max 5 at doc 0 pos 2); token 6 -> (3+0.5)/2 (max 3 at doc 0 pos 1)
    np.testing.assert_allclose(out["neuron_token_means"], [[3.0, 1.75], [1.5, 1.0]])
    np.testing.assert_allclose(out["neuron_token_values"], [[5.0, 3.0], [4.0, 2.0]])
    assert out["neuron_token_refs"][0].tolist() == [[0, 2, 5], [0, 1, 6]]
    assert out["neuron_token_refs"][1].tolist() == [[1, 0, 6], [0, 0, 5]]
    # the cluster's token 6: mean over neurons (1.75 + 1.5) / 2; z means ((1.75-1)/2 + (1.5-0)/1) / 2
    np.testing.assert_allclose(out["cluster_token_means"], [[1.625]])
    np.testing.assert_allclose(out["cluster_token_z"], [[(0.375 + 1.5) / 2]])
    # strongest by z: neuron 0's 3.0 is z 1, neuron 1's 4.0 is z 4 -> neuron 1 at doc 1 pos 0
    assert out["cluster_token_neurons"].tolist() == [[1]] and out["cluster_token_values"].tolist() == [[4.0]]
    assert out["cluster_token_refs"][0].tolist() == [[1, 0, 6]]


def test_stage_matches_eq1_and_a_brute_force_maximum(tiny_model: Path, tiny_corpus: Path, tmp_path: Path):
    from neurosearch.pipeline import build_index
    from neurosearch.pipeline.stats import TokenStats, pad_batch, special_mask
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
    from neurosearch.corpus import make_windows, training_documents
    from neurosearch.model.loading import NeuronHooks, load_model, neuron_site

    config = BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16, max_docs=60),
        stats=StatsConfig(batch_tokens=256, shard_docs=25),
        profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"),
        clusters=ClusterConfig(ks=(3,)),
        concepts=False,
    )
    out = tmp_path / "index"
    build_index(config, out)
    stats = TokenStats.load(out / "stats")
    kept = json.loads((out / "tokens.json").read_text())
    top = np.load(out / "methods" / "filter" / "neuron_top_tokens.npy")[:, :30]
    means = np.load(out / "contexts" / "neuron_token_means.npy")
    row_of = {int(t): i for i, t in enumerate(stats.token_ids)}
    eq1 = stats.token_means()
    expected = [[eq1[row_of[kept["ids"][t]], n] for t in top[n]] for n in range(top.shape[0])]
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
    # brute force: every activation of every counted token of the documents the index is built from
    # (held-out documents count, empty), the maximum per (neuron, top token)
    loaded = load_model(config.model)
    site = neuron_site(loaded.encoder, "ffn")
    windows = make_windows(loaded.tokenizer, list(training_documents(config.corpus)), 0, 16)
    seen = []
    with NeuronHooks(site, lambda layer, x: seen.append((layer, x.detach().reshape(-1, x.shape[-1])))), torch.inference_mode():
        batch = pad_batch(windows, list(range(len(windows.input_ids))), loaded.tokenizer.pad_token_id)
        valid = special_mask(loaded.tokenizer, batch["input_ids"], batch["attention_mask"]).reshape(-1)
        loaded.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    full = torch.cat([x for _, x in sorted(seen, key=lambda item: item[0])], dim=1)[valid].numpy()
    token = batch["input_ids"].reshape(-1)[valid].numpy()
    document, position = batch["docs"].reshape(-1)[valid].numpy(), batch["pos"].reshape(-1)[valid].numpy()
    values = np.load(out / "contexts" / "neuron_token_values.npy")
    refs = np.load(out / "contexts" / "neuron_token_refs.npy")
    for n in range(top.shape[0]):
        for j in range(values.shape[1]):
            on = token == kept["ids"][top[n, j]]
            assert values[n, j] == pytest.approx(full[on, n].max(), rel=1e-5)
            assert refs[n, j, 2] == kept["ids"][top[n, j]]
            at = (document == refs[n, j, 0]) & (position == refs[n, j, 1])
            assert at.sum() == 1 and full[at, n][0] == pytest.approx(values[n, j], rel=1e-5)
