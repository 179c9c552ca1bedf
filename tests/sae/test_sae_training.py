"""Activations of a tiny random BERT collected to disk, a tiny SAE trained on them, resumed, measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosearch.config import CorpusConfig, ModelConfig
from neurosearch.sae.activations import ActivationFiles, ActivationsError, collect_activations
from neurosearch.sae.model import FeatureStats, load_sae
from neurosearch.sae.train import SAEConfig, _SelectedPreacts, train_sae

LAYER = 1
SHARD_DOCS = 50


def configs(tiny_model: Path, tiny_corpus: Path) -> tuple[ModelConfig, CorpusConfig]:
    return (ModelConfig(model=str(tiny_model), dtype="float32", device="cpu"),
            CorpusConfig(source=str(tiny_corpus), window=16, heldout_share=0.1))


@pytest.fixture(scope="module")
def activations(tmp_path_factory, tiny_model, tiny_corpus) -> ActivationFiles:
    model, corpus = configs(tiny_model, tiny_corpus)
    files = collect_activations(model, corpus, LAYER, tmp_path_factory.mktemp("acts") / "L1", batch_tokens=256,
                                shard_docs=SHARD_DOCS)
    assert files is not None
    return files


def test_collected_rows_are_the_ffn_activations_of_each_token(activations, tiny_model, tiny_corpus):
    from neurosearch.corpus import is_heldout, make_windows, read_documents
    from neurosearch.model.loading import NeuronHooks, load_model, neuron_site

    model, corpus = configs(tiny_model, tiny_corpus)
    record = activations.record
    assert record["hook_name"] == "encoder.layer.1.intermediate" and record["d_in"] == 24
    assert activations.train.dtype == np.float16 and activations.train.shape[1] == 24
    texts = list(read_documents(corpus))
    heldout = {n for n, t in enumerate(texts) if is_heldout(t, 0.1)}
    assert 0 < len(heldout) < len(texts) and record["heldout_documents"] == len(heldout)
    assert set(activations.heldout_refs[:, 0]) == heldout
    assert set(activations.train_refs[:, 0]) == {n for n, t in enumerate(texts) if t.strip()} - heldout
    loaded = load_model(model)
    site = neuron_site(loaded.encoder, "ffn")
    for document in sorted(heldout)[:2] + [0, 7]:
        windows = make_windows(loaded.tokenizer, [texts[document]], document, 16)
        captured = []
        with NeuronHooks(site, lambda layer, x: captured.append(x[0, 1:-1]) if layer == LAYER else None), \
                torch.inference_mode():
            for ids in windows.input_ids:
                loaded.encoder(input_ids=torch.tensor([ids]))
        expected = torch.cat(captured).numpy().astype(np.float16)  # positions 0.. of the document
        part, refs = ((activations.heldout, activations.heldout_refs) if document in heldout
                      else (activations.train, activations.train_refs))
        rows = np.flatnonzero(refs[:, 0] == document)
        assert len(rows) == len(expected)
        got = np.asarray(part)[rows[np.argsort(refs[rows, 1])]]
        np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)


def test_collection_resumes_to_the_same_files(activations, tiny_model, tiny_corpus, tmp_path):
    model, corpus = configs(tiny_model, tiny_corpus)
    out = tmp_path / "resumed"
    assert collect_activations(model, corpus, LAYER, out, batch_tokens=256, shard_docs=SHARD_DOCS, stop_after_shards=2) is None
    progress = json.loads((out / "activations.json").read_text())
    assert progress["documents_done"] == 2 * SHARD_DOCS and not progress["complete"]
    files = collect_activations(model, corpus, LAYER, out, batch_tokens=256, shard_docs=SHARD_DOCS)
    for name in ("train", "heldout", "train_refs", "heldout_refs"):
        assert np.array_equal(np.asarray(getattr(files, name)), np.asarray(getattr(activations, name)))
    assert collect_activations(model, corpus, 0, tmp_path / "other", shard_docs=SHARD_DOCS, stop_after_shards=1) is None
    with pytest.raises(ActivationsError, match="another model, layer or corpus"):
        collect_activations(model, corpus, 1, tmp_path / "other", shard_docs=SHARD_DOCS)


def test_the_selected_preactivations_have_the_dense_gradients():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(7, 5, dtype=torch.float64, generator=generator)
    w = torch.randn(5, 11, dtype=torch.float64, generator=generator)
    b = torch.randn(11, dtype=torch.float64, generator=generator)
    weights = torch.randn(7, 3, dtype=torch.float64, generator=generator)
    indices = (inputs @ w + b).topk(3, dim=1).indices
    grads = []
    for sparse in (False, True):
        leaves = [t.clone().requires_grad_(True) for t in (inputs, w, b)]
        pre = leaves[0] @ leaves[1] + leaves[2]
        if sparse:
            selected = _SelectedPreacts.apply(*leaves, indices, pre.detach().gather(1, indices))
        else:
            selected = pre.gather(1, indices)
        (selected * weights).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for dense, sparse in zip(*grads):
        assert torch.allclose(dense, sparse, atol=1e-12)


CONFIG = SAEConfig(k=4, expansion=8, batch_size=256, epochs=12, dead_window_tokens=1000, log_seconds=0.0,
                   checkpoint_seconds=1e9)


def fvus(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r" fvu ([0-9.]+) ", log.read_text())]


def test_training_lowers_the_fvu_and_saves_a_measured_sae(activations, tmp_path):
    torch.set_num_threads(1)
    result = train_sae(activations, tmp_path / "run", CONFIG)
    steps = 12 * -(-activations.train.shape[0] // 256)
    assert result.complete and result.steps == steps and 200 <= steps <= 600
    curve = fvus(tmp_path / "run" / "train.log")
    assert len(curve) == steps and curve[-1] < 0.5 * curve[0]
    assert result.fvu is not None and 0 < result.fvu < 1
    sae = load_sae(result.directory)
    assert (sae.d_in, sae.d_sae, sae.k) == (24, 192, 4)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(192), atol=1e-5)
    info = sae.info
    assert (info.site, info.layer, info.hook_name) == ("ffn", 1, "encoder.layer.1.intermediate")
    assert info.training_tokens == activations.train.shape[0] and info.heldout_tokens == activations.heldout.shape[0]
    assert info.fvu == result.fvu and 0 <= info.dead_share < 1 and info.train_seconds > 0
    stats = FeatureStats.load(result.directory)
    assert float((stats.frequency == 0).float().mean()) == info.dead_share
    assert abs(float(stats.frequency.sum()) - 4) < 0.5  # about k features fire per row
    assert not (tmp_path / "run" / "checkpoints").exists()
    again = train_sae(activations, tmp_path / "run", CONFIG)  # a rerun after the end trains nothing
    assert again.complete and again.fvu == result.fvu


def test_a_resumed_training_ends_with_the_same_weights(activations, tmp_path):
    torch.set_num_threads(1)
    config = SAEConfig(k=4, expansion=4, batch_size=256, epochs=3, dead_window_tokens=300, log_seconds=1e9,
                       checkpoint_seconds=1e9, seed=5)
    whole = train_sae(activations, tmp_path / "whole", config)
    first = train_sae(activations, tmp_path / "parts", config, stop_after_steps=7)
    assert not first.complete and first.steps == 7
    second = train_sae(activations, tmp_path / "parts", config, stop_after_steps=9)
    assert not second.complete and second.steps == 16
    last = train_sae(activations, tmp_path / "parts", config)
    assert last.complete and "resuming at step 16" in (tmp_path / "parts" / "train.log").read_text()
    a, b = load_sae(whole.directory), load_sae(last.directory)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert last.fvu == whole.fvu and last.dead_share == whole.dead_share


def test_both_auxk_computations_give_the_same_reconstruction_and_gradients():
    from neurosearch.sae.model import TopKSAE
    from neurosearch.sae.train import aux_reconstruction

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(9, 6, dtype=torch.float64, generator=generator)
    dead = torch.zeros(40, dtype=torch.bool)
    dead[[1, 4, 5, 11, 20, 33, 39]] = True
    results = []
    for dense in (False, True):
        sae = TopKSAE.initialised(6, 40, 3, seed=4).double()
        centered = x - sae.b_dec
        with torch.no_grad():
            pre = torch.addmm(sae.b_enc, centered, sae.W_enc)
        aux = aux_reconstruction(sae, centered, pre, dead, 4, dense=dense)
        aux.pow(2).sum().backward()
        results.append([aux.detach()] + [p.grad for p in (sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec)])
    for gathered, dense in zip(*results):
        assert torch.allclose(gathered, dense, atol=1e-12)
    assert results[0][0].abs().sum() > 0
