"""Ablation hooks, baselines and the loss experiment on a tiny random BertForMaskedLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurosearch.config import ModelConfig
from neurosearch.experiments.ablation import AblationConfig, ConditionAblator, run_ablation
from neurosearch.experiments.baselines import draw_baseline
from neurosearch.experiments.readouts import MaskedLMReadout, OwnHeadMaskedLM, mask_sentences
from neurosearch.experiments.sentences import SentencePool
from neurosearch.experiments.targets import AblationTarget
from neurosearch.model.loading import NeuronHooks, load_model, neuron_site


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    model = load_model(ModelConfig(model=str(tiny_model), dtype="float32"), mlm=True)
    assert model.has_mlm_head
    return model


def _inputs(loaded):
    ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 12, 13, 3, 0]])
    return ids, (ids != 0).long()


def _capture(loaded, site, ablator=None):
    ids, attention = _inputs(loaded)
    seen = {}
    hooks = [NeuronHooks(site, ablator)] if ablator is not None else []
    hooks.append(NeuronHooks(site, lambda layer, x: seen.__setitem__(layer, x.clone())))
    for hook in hooks:
        hook.__enter__()
    try:
        with torch.inference_mode():
            loaded.encoder(input_ids=ids, attention_mask=attention)
    finally:
        for hook in reversed(hooks):
            hook.__exit__()
    return seen


@pytest.mark.parametrize("ablation", ["mean", "layer-mean", "zero"])
@pytest.mark.parametrize("site_name", ["ffn", "hidden"])
def test_hooks_change_exactly_the_named_neurons(loaded, ablation: str, site_name: str):
    site = neuron_site(loaded.encoder, site_name)
    width = site.neurons_per_layer
    layer = site.n_layers - 1  # the last layer: nothing downstream of it is hooked
    chosen = np.array([layer * width + 1, layer * width + 4])
    means = np.arange(site.n_neurons, dtype=np.float32) / 10
    ablator = ConditionAblator(site, ablation, means)
    ablator.set_conditions([chosen])
    clean = _capture(loaded, site)
    ablated = _capture(loaded, site, ablator)
    for other in range(layer):
        assert torch.equal(clean[other], ablated[other])
    untouched = [i for i in range(width) if i not in (1, 4)]
    assert torch.equal(clean[layer][..., untouched], ablated[layer][..., untouched])
    for index in (1, 4):
        if ablation == "mean":
            expected = torch.full_like(clean[layer][..., index], float(means[layer * width + index]))
        elif ablation == "layer-mean":
            expected = clean[layer].mean(dim=-1)
        else:
            expected = torch.zeros_like(clean[layer][..., index])
        torch.testing.assert_close(ablated[layer][..., index], expected, rtol=0, atol=1e-6)


def test_empty_neuron_set_gives_identical_loss(loaded):
    site = neuron_site(loaded.encoder, "ffn")
    scorer = OwnHeadMaskedLM(loaded.model)
    ids, attention = _inputs(loaded)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 3] = 8, 13
    masked = ids.clone()
    masked[labels != -100] = 4
    with torch.inference_mode():
        plain = scorer.token_losses(masked.repeat(2, 1), attention.repeat(2, 1), labels.repeat(2, 1)).view(2, -1)[0]
        ablator = ConditionAblator(site, "mean", np.zeros(site.n_neurons, dtype=np.float32))
        ablator.set_conditions([np.zeros(0, dtype=np.int64), np.array([0, 1, 30])])
        with NeuronHooks(site, ablator):
            both = scorer.token_losses(masked.repeat(2, 1), attention.repeat(2, 1), labels.repeat(2, 1)).view(2, -1)
    assert torch.equal(both[0], plain)
    assert not torch.equal(both[1], plain)


def test_baselines_have_the_required_structure():
    width, layers = 50, 4
    target = np.array([0 * width + 3, 1 * width + 3, 2 * width + 3, 2 * width + 7, 3 * width + 11])
    draws = {kind: [draw_baseline(kind, target, layers, width, np.random.default_rng(seed)) for seed in range(5)]
             for kind in ("random", "random_layer", "random_position")}
    for kind, sets in draws.items():
        for drawn in sets:
            assert len(np.unique(drawn)) == len(target), kind
        assert len({tuple(s) for s in sets}) > 1, f"{kind}: seeds must give different draws"
    for drawn in draws["random_layer"]:
        assert sorted((drawn // width).tolist()) == sorted((target // width).tolist())
    for drawn in draws["random_position"]:
        assert sorted((drawn // width).tolist()) == sorted((target // width).tolist())
        # indices shared across layers in the target stay shared: index 3 sits in layers 0, 1, 2
        by_layer = {int(n // width): set() for n in drawn}
        for n in drawn:
            by_layer[int(n // width)].add(int(n % width))
        shared = by_layer[0] & by_layer[1] & by_layer[2]
        assert len(shared) == 1 and 3 not in shared
        assert not ({int(n % width) for n in drawn} & {3, 7, 11})
    assert draw_baseline("random", np.array([], dtype=np.int64), layers, width, np.random.default_rng(0)).size == 0


def test_run_ablation_reports_the_contract(loaded, tiny_corpus: Path):
    site = neuron_site(loaded.encoder, "ffn")
    readout = MaskedLMReadout("mlm", OwnHeadMaskedLM(loaded.model), "model")
    docs = tiny_corpus.read_text().splitlines()
    pool = SentencePool.from_documents(loaded.tokenizer, [d + "." for d in docs], max_tokens=32)
    vocab = loaded.tokenizer.get_vocab()
    target = AblationTarget("neurons", "test", [0, 1, 2, 30], [vocab["monday"], vocab["friday"]], ["monday", "friday"])
    config = AblationConfig(readouts=("mlm",), sentences=12, draws=3, batch_sentences=5, conditions_per_pass=4)
    means = np.zeros(site.n_neurons, dtype=np.float32)
    result = run_ablation([readout], site, loaded.tokenizer, pool, target, config, means=means, encoder=loaded.encoder)
    mlm = result.readouts["mlm"]
    assert result.sentences == 12 and mlm.measures.scored_tokens >= 12
    assert set(mlm.baselines) == {"random", "random_layer", "random_position"}
    for stats in mlm.baselines.values():
        assert len(stats.draws) == 3 and 0 <= stats.p <= 1 and 0 < stats.p_empirical <= 1
    assert result.target.neurons == ["0:0", "0:1", "0:2", "1:6"]
    assert result.verdict.readout == "mlm" and not result.verdict.passed  # 3 draws cannot pass at 0.05
    assert sum(result.sentences_per_token.values()) == 12
    # one pass per condition gives the same numbers as stacked conditions
    single = run_ablation([readout], site, loaded.tokenizer, pool, target,
                          AblationConfig(readouts=("mlm",), sentences=12, draws=3, batch_sentences=5,
                                         conditions_per_pass=1),
                          means=means, encoder=loaded.encoder)
    assert single.readouts["mlm"].measures.loss == pytest.approx(mlm.measures.loss, rel=1e-5)
    assert single.readouts["mlm"].value == pytest.approx(mlm.value, rel=1e-4, abs=1e-6)


def test_masking_marks_targets_and_controls(loaded):
    tok = loaded.tokenizer
    vocab = tok.get_vocab()
    sentence = [vocab[w] for w in "the dog and the cat".split()]
    batch = mask_sentences(tok, [sentence], {vocab["dog"], vocab["cat"]}, np.random.default_rng(0))
    assert int(batch.is_target.sum()) == 2 and int((~batch.is_target).sum()) == 2
    assert (batch.input_ids == tok.mask_token_id).sum() == 4


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("site_name", ["ffn", "hidden"])
def test_restarting_at_the_first_ablated_block_changes_nothing(tmp_path: Path, tiny_corpus: Path,
                                                               family: str, site_name: str):
    """Skipping the clean blocks before the first ablated one gives the losses of full passes."""
    from tests.conftest import save_tiny_model

    loaded = load_model(ModelConfig(model=str(save_tiny_model(tmp_path / family, family)), dtype="float32"), mlm=True)
    site = neuron_site(loaded.encoder, site_name)
    readout = MaskedLMReadout("mlm", OwnHeadMaskedLM(loaded.model), "model")
    docs = tiny_corpus.read_text().splitlines()
    pool = SentencePool.from_documents(loaded.tokenizer, [d + "." for d in docs], max_tokens=32)
    vocab = loaded.tokenizer.get_vocab()
    width = site.neurons_per_layer
    # neurons only in the upper layers, so the target pass really starts late
    neurons = [(site.n_layers - 1) * width + 1, (site.n_layers - 1) * width + 5]
    target = AblationTarget("neurons", "t", neurons, [vocab["monday"], vocab["friday"]], ["monday", "friday"])
    config = AblationConfig(readouts=("mlm",), sentences=10, draws=3, batch_sentences=4, conditions_per_pass=1)
    means = np.random.default_rng(0).normal(size=site.n_neurons).astype(np.float32)

    def run(config: AblationConfig, skip: bool):
        return run_ablation([readout], site, loaded.tokenizer, pool, target, config, means=means,
                            encoder=loaded.encoder, skip_clean_blocks=skip).readouts["mlm"]

    full = run(config, False)
    skipping = run(config, True)
    assert full.value != 0
    assert skipping.measures.loss == pytest.approx(full.measures.loss, rel=1e-6)
    assert skipping.value == pytest.approx(full.value, rel=1e-5, abs=1e-7)
    for kind, stats in full.baselines.items():
        assert skipping.baselines[kind].draws == pytest.approx(stats.draws, rel=1e-5, abs=1e-7)
    assert len(site.modules) == site.n_layers  # the block list is restored
    stacked = run(AblationConfig(readouts=("mlm",), sentences=10, draws=3, batch_sentences=4, conditions_per_pass=5),
                  True)
    assert stacked.value == pytest.approx(full.value, rel=1e-4, abs=1e-6)
