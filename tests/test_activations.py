"""Eq. 1 statistics: a hand-computed case, exact merging, and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurosearch.pipeline.stats import StatsAccumulator, TokenStats, shard_statistics
from neurosearch.config import ModelConfig, StatsConfig
from neurosearch.model.loading import NeuronSite, load_model, neuron_site

CLS, SEP, PAD = 2, 3, 0


@pytest.mark.parametrize("path", ["fused", "torch"])
def test_eq1_hand_computed(path: str):
    """Two documents, one layer of two neurons, activations chosen by hand (both accumulation paths)."""
    site = NeuronSite("ffn", [nn.Identity()], neurons_per_layer=2)
    acc = StatsAccumulator(site, vocab_size=10, top_k=2)
    if path == "torch":
        acc._kernel = None
    else:
        pytest.importorskip("numba")
        assert acc._kernel is not None
    # doc 0: [CLS] 5 6 5 [SEP] ; doc 1: [CLS] 6 7 [SEP] [PAD]
    ids = torch.tensor([[CLS, 5, 6, 5, SEP], [CLS, 6, 7, SEP, PAD]])
    valid = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=torch.bool)
    docs = torch.tensor([[0] * 5, [1] * 5])
    pos = torch.tensor([[-1, 0, 1, 2, 3], [-1, 0, 1, 2, 3]])
    x = torch.tensor(
        [
            [[9.0, 9.0], [1.0, 2.0], [3.0, -1.0], [5.0, 0.0], [9.0, 9.0]],
            [[9.0, 9.0], [0.5, 4.0], [-2.0, 1.0], [9.0, 9.0], [9.0, 9.0]],
        ]
    )
    acc.begin_batch(ids, valid, docs, pos)
    acc.observe(0, x)
    stats = acc.export()
    assert stats.token_ids.tolist() == [5, 6, 7]
    assert stats.token_counts.tolist() == [2, 2, 1]
    # Eq. 1 by hand: token 5 -> ((1+5)/2, (2+0)/2); token 6 -> ((3+0.5)/2, (-1+4)/2); token 7 -> (-2, 1)
    np.testing.assert_array_equal(stats.token_means(), [[3.0, 1.0], [1.75, 1.5], [-2.0, 1.0]])
    assert stats.tokens == 5
    np.testing.assert_allclose(stats.neuron_mean(), [(1 + 3 + 5 + 0.5 - 2) / 5, (2 - 1 + 0 + 4 + 1) / 5])
    np.testing.assert_allclose(stats.neuron_sumsq, [1 + 9 + 25 + 0.25 + 4, 4 + 1 + 0 + 16 + 1])
    # top-2 per neuron, as (document, position, token) references; [CLS]/[SEP]/[PAD] never count
    np.testing.assert_array_equal(stats.top_values, [[5.0, 3.0], [4.0, 2.0]])
    assert stats.top_refs[0].tolist() == [[0, 2, 5], [0, 1, 6]]
    assert stats.top_refs[1].tolist() == [[1, 0, 6], [0, 0, 5]]


def _documents(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_two_shards_merged_equal_one_pass(tiny_model: Path, tiny_corpus: Path):
    """Statistics of two shards computed apart and merged == one accumulator fed both shards."""
    from neurosearch.pipeline.stats import accumulate, vocab_size

    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    docs = _documents(tiny_corpus)
    config = StatsConfig(batch_tokens=256, top_k=5)
    one_pass = StatsAccumulator(site, vocab_size(loaded), config.top_k)
    accumulate(loaded, site, one_pass, docs[:100], 0, config, 16)
    accumulate(loaded, site, one_pass, docs[100:], 100, config, 16)
    whole = one_pass.export()
    first = shard_statistics(loaded, site, docs[:100], 0, config, 16).export()
    second = shard_statistics(loaded, site, docs[100:], 100, config, 16).export()
    merged = first.merge(second)
    np.testing.assert_array_equal(merged.token_ids, whole.token_ids)
    np.testing.assert_array_equal(merged.token_counts, whole.token_counts)
    # the same float64 additions in another association order: equal up to float64 rounding
    np.testing.assert_allclose(merged.token_sums, whole.token_sums, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(merged.neuron_sumsq, whole.neuron_sumsq, rtol=1e-13)
    np.testing.assert_array_equal(merged.top_values, whole.top_values)
    np.testing.assert_array_equal(merged.top_refs, whole.top_refs)
    assert (merged.documents, merged.windows) == (whole.documents, whole.windows)
    assert whole.tokens == sum(len(d.split()) for d in docs)  # no token dropped by windowing
    # Batching all documents together pads windows differently, which moves float32 activations
    # in their last bits (a property of the model's GEMMs, not of the statistics).
    together = shard_statistics(loaded, site, docs, 0, config, 16).export()
    np.testing.assert_array_equal(together.token_counts, whole.token_counts)
    np.testing.assert_allclose(together.token_sums, whole.token_sums, rtol=1e-5, atol=1e-5)


def test_fused_kernel_matches_the_torch_path(tiny_model: Path, tiny_corpus: Path):
    """The numba pass gives the torch path's statistics: sums bit for bit, squares to rounding."""
    pytest.importorskip("numba")
    from neurosearch.pipeline.stats import accumulate, vocab_size

    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    site = neuron_site(loaded.encoder, "ffn")
    docs = _documents(tiny_corpus)
    config = StatsConfig(batch_tokens=256, top_k=5)
    results = []
    for use_kernel in (True, False):
        accumulator = StatsAccumulator(site, vocab_size(loaded), config.top_k)
        if not use_kernel:
            accumulator._kernel = None
        accumulate(loaded, site, accumulator, docs, 0, config, 16)
        results.append(accumulator.export())
    fused, plain = results
    np.testing.assert_array_equal(fused.token_counts, plain.token_counts)
    np.testing.assert_array_equal(fused.token_sums, plain.token_sums)
    np.testing.assert_allclose(fused.neuron_sumsq, plain.neuron_sumsq, rtol=1e-12)
    np.testing.assert_array_equal(fused.top_values, plain.top_values)
    np.testing.assert_array_equal(fused.top_refs, plain.top_refs)


def test_hooks_capture_every_layer(tiny_model: Path):
    loaded = load_model(ModelConfig(model=str(tiny_model), dtype="float32"))
    for name, layers, width in (("ffn", 2, 24), ("hidden", 3, 16)):
        site = neuron_site(loaded.encoder, name)
        assert (site.n_layers, site.neurons_per_layer) == (layers, width)


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_sites_for_each_family(tmp_path: Path, family: str):
    from conftest import save_tiny_model

    from neurosearch.model.loading import NeuronHooks

    loaded = load_model(ModelConfig(model=str(save_tiny_model(tmp_path / family, family)), dtype="float32"))
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    for name, layers, width in (("ffn", 2, 24), ("hidden", 3, 16)):
        site = neuron_site(loaded.encoder, name)
        seen: dict[int, tuple] = {}
        with NeuronHooks(site, lambda layer, x: seen.__setitem__(layer, tuple(x.shape))), torch.inference_mode():
            loaded.encoder(input_ids=ids, attention_mask=torch.ones_like(ids))
        assert seen == {layer: (1, 5, width) for layer in range(layers)}, (family, name)


def _build(model: Path, corpus: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "neurosearch.cli", "build", "--model", str(model), "--corpus", str(corpus),
         "--out", str(out), "--until", "stats", "--shard-docs", "20", "--batch-tokens", "128", "--dtype",
         "float32", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_resume_after_sigkill_matches_uninterrupted(tmp_path: Path, tiny_model: Path):
    from conftest import make_corpus

    corpus = make_corpus(tmp_path / "docs.txt", 400, seed=1, words=(20, 60))
    reference = tmp_path / "reference"
    assert _build(tiny_model, corpus, reference).wait() == 0
    killed = tmp_path / "killed"
    process = _build(tiny_model, corpus, killed)
    deadline = time.time() + 120
    while not list((killed / "checkpoint").glob("stats-*/progress.json")):
        assert process.poll() is None, "build finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "stats").exists()
    resumed = _build(tiny_model, corpus, killed)
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    a, b = TokenStats.load(reference / "stats"), TokenStats.load(killed / "stats")
    for name in ("token_ids", "token_counts", "token_sums", "neuron_sumsq", "top_values", "top_refs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.documents, a.windows) == (b.documents, b.windows)
