"""Causal verification on hand cases: target tokens, stratified sentences, seeded draws, the verdict,
the typed result contract, and the embedding readout on a tiny random encoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosearch.config import ModelConfig
from neurosearch.errors import NeurosearchError
from neurosearch.experiments.ablation import AblationConfig, run_ablation
from neurosearch.experiments.baselines import baseline_sets, compare
from neurosearch.experiments.readouts import EmbeddingReadout, MaskedLMReadout, OwnHeadMaskedLM, mask_sentences, windows
from neurosearch.format.results import AblationResult, BaselineResult, neuron_hash
from neurosearch.verdicts import rank_p, verdict
from neurosearch.index.stored import lookup
from neurosearch.experiments.checks import resolve_readouts
from neurosearch.experiments.sentences import SentencePool
from neurosearch.experiments.targets import AblationTarget, content_tokens, is_content_token, query_members
from neurosearch.model.loading import load_model, neuron_site
from neurosearch.model.pooling import SentencePooling, read_pooling


# -- targets ----------------------------------------------------------------------------------


def test_target_tokens_drop_punctuation_stopwords_pieces_and_specials():
    tokens = [".", "the", "monday", ",", "##day", "[CLS]", "and", "tuesday", "s", "'", "monday", "<s>", "week", "2019"]
    assert content_tokens(tokens, 10, special={"<s>"}) == ["monday", "tuesday", "week", "2019"]
    assert content_tokens(tokens, 2) == ["monday", "tuesday"]
    assert not is_content_token("--") and not is_content_token("[MASK]") and is_content_token("sunday")


def test_query_members_are_the_strongest_content_members():
    class Expanded:
        def to_json(self):
            return [{"token": "monday", "weight": 1.0}, {"token": "the", "weight": 1.0},
                    {"token": "friday", "weight": 0.6}, {"token": "weekend", "weight": 0.3}]

    assert query_members(Expanded(), 10) == ["monday", "friday"]  # 0.3 < 0.5 x top
    assert query_members(Expanded(), 1) == ["monday"]


def test_sentences_are_stratified_per_token_and_controls_match_lengths():
    # token 1 is in 40 sentences, token 2 in 5, token 3 in none; 30 filler sentences have neither
    sentences = [[1, 9, 9, 9] for _ in range(40)] + [[2, 9, 9, 9, 9] for _ in range(5)]
    sentences += [[9] * (4 + i % 2) for i in range(30)]
    pool = SentencePool.from_sentences(sentences)
    assert pool.sentence(40) == [2, 9, 9, 9, 9] and pool.with_token(2).tolist() == list(range(40, 45))
    chosen, per_token = pool.select([1, 2, 3], 12, np.random.default_rng(0))
    assert per_token == {1: 7, 2: 5, 3: 0} and len(chosen) == 12  # token 2 gives what it has, 1 the rest
    assert pool.select([1, 2], 12, np.random.default_rng(0))[0] == chosen  # seeded
    controls = pool.controls(chosen, [1, 2, 3], np.random.default_rng(1))
    assert len(controls) == len(chosen) and not set(controls) & set(chosen)
    assert all(1 not in sentences[c] and 2 not in sentences[c] for c in controls)
    assert sorted(len(sentences[c]) for c in controls) == sorted(len(sentences[c]) for c in chosen)


def test_windows_centre_on_the_target_and_cut_controls_alike():
    cut, controls = windows([[5, 5, 5, 5, 5, 1, 5, 5, 5, 5]], [[7] * 10], {1}, 4, np.random.default_rng(0))
    assert cut == [[5, 5, 1, 5]] and len(controls[0]) == 4


# -- baselines and verdict --------------------------------------------------------------------


def test_draws_differ_between_targets_of_one_size_and_repeat_for_one():
    a, b = [3, 70, 140], [4, 71, 141]
    draws = lambda neurons, seed=0: [s.tolist() for _, s in baseline_sets(  # noqa: E731
        neurons, neuron_hash([f"{n // 50}:{n % 50}" for n in neurons]), ("random", "random_layer"), 5, seed, 4, 50)]
    assert draws(a) == draws(a)
    assert draws(a) != draws(b)
    assert draws(a) != draws(a, seed=1)
    assert len({tuple(d) for d in draws(a)}) > 1


def _baseline(kind: str, mean: float, p: float, p_emp: float, n: int = 20) -> BaselineResult:
    return BaselineResult(kind, mean, 1.0, 0.0, p, p_emp, [mean] * n)


def test_verdict_passes_only_when_every_baseline_is_beaten_by_both_tests():
    beaten = [_baseline("random", 1, 0.001, 1 / 21), _baseline("random_layer", 1, 0.01, 1 / 21)]
    v = verdict("embedding", 3.0, beaten, 0.05)
    assert v.passed and v.beats == ["random", "random_layer"] and v.p == 0.01 and v.p_empirical == pytest.approx(1 / 21)
    assert "passed: beats 2/2 baselines" in v.line() and "embedding readout" in v.line()
    t_only = [beaten[0], _baseline("random_layer", 1, 0.01, 2 / 21)]  # one draw at or above the target
    assert not verdict("embedding", 3.0, t_only, 0.05).passed
    rank_only = [beaten[0], _baseline("random_layer", 1, 0.2, 1 / 21)]
    v = verdict("mlm", 3.0, rank_only, 0.05)
    assert not v.passed and v.beats == ["random"] and "not passed: beats 1/2" in v.line()
    below_mean = [_baseline("random", 5, 0.001, 1 / 21)]
    assert not verdict("mlm", 3.0, below_mean, 0.05).passed
    assert not verdict("mlm", 3.0, [], 0.05).passed


def test_rank_p_and_too_few_draws():
    assert rank_p(3.0, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(3 / 5)
    few = compare("random", 10.0, [1.0, 1.1, 0.9, 1.2, 1.0])
    assert few.p_empirical == pytest.approx(1 / 6) and few.p < 1e-4
    v = verdict("mlm", 10.0, [few], 0.05)
    assert not v.passed and "5 draws cannot pass" in v.notes[0] and "at least 20 draws" in v.notes[0]


def test_auto_readout_follows_the_model():
    assert resolve_readouts(["auto"], has_mlm_head=True, has_pooling_config=False, has_fitted_head=False) == ["mlm"]
    assert resolve_readouts(["auto"], has_mlm_head=False, has_pooling_config=True, has_fitted_head=True) == ["embedding"]
    assert resolve_readouts(["auto", "mlm"], has_mlm_head=False, has_pooling_config=False,
                            has_fitted_head=True) == ["mlm"]
    with pytest.raises(NeurosearchError, match="fit-head"):
        resolve_readouts(["mlm"], has_mlm_head=False, has_pooling_config=True, has_fitted_head=False)
    with pytest.raises(NeurosearchError, match="readout"):
        AblationConfig(readouts=("bogus",))


# -- results ----------------------------------------------------------------------------------


def _v1(neurons: list[str]) -> dict:
    base = {"mean_pct": 0.5, "std_pct": 0.3, "z": 2.0, "p": 0.01, "p_empirical": 1 / 6, "seeds": 5,
            "draws_pct": [0.1, 0.4, 0.5, 0.6, 0.9]}
    return {"target": {"kind": "cluster", "id": "filter/k3/0", "neurons": neurons}, "tokens": ["monday"],
            "ablation": "mean", "head": "fitted", "sentences": 8, "masked_tokens": 9, "control_tokens": 9,
            "loss": 3.0, "loss_ablated": 3.1, "change_pct": 3.3, "control_change_pct": 0.2,
            "baselines": {"random": base, "random_layer": base, "random_position": dict(base, losses=[1.0] * 5)}}


def test_legacy_results_load_but_never_pass():
    old = AblationResult.from_json(_v1(["0:1", "1:2"]))
    assert old.legacy and old.draws == 5 and old.primary.value == pytest.approx(3.3)
    assert old.primary.baselines["random"].draws == [0.1, 0.4, 0.5, 0.6, 0.9]
    assert not old.verdict.passed and "cannot pass" in old.verdict.notes[0]
    assert old.target.neurons_sha256 == neuron_hash(["1:2", "0:1"])
    again = AblationResult.from_json(old.to_json())
    assert again.legacy and again.to_json() == old.to_json()


def test_one_cluster_measured_on_two_concepts_keeps_both_results():
    import dataclasses

    first = AblationResult.from_json(AblationResult.from_json(_v1(["0:1", "1:2"])).to_json() | {"format": 2})
    other = dataclasses.replace(first, target=dataclasses.replace(first.target, tokens=["tuesday"]))
    assert first.store_key() != other.store_key()
    assert first.store_key() == dataclasses.replace(first, sentences=3).store_key()  # same measurement, one key


def test_lookup_shows_only_results_about_the_current_neurons():
    old = AblationResult.from_json(_v1(["0:1", "1:2"]))
    found = lookup([old], "cluster", "filter/k3/0", ["1:2", "0:1"])
    assert found.current is old and found.note("x") is None
    moved = lookup([old], "cluster", "filter/k3/0", ["0:1", "1:2", "1:3"])
    assert moved.current is None and "earlier clustering (2 neurons" in moved.note("neurosearch ablate filter/k3/0")
    assert lookup([old], "cluster", "filter/k3/1", ["0:1"]).note("x") is None


# -- readouts on tiny models ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model: Path):
    return load_model(ModelConfig(model=str(tiny_model), dtype="float32"), mlm=True)


@pytest.fixture(scope="module")
def pool(tiny, tiny_corpus: Path) -> SentencePool:
    docs = tiny_corpus.read_text().splitlines()
    return SentencePool.from_documents(tiny.tokenizer, [d + "." for d in docs], max_tokens=32)


def test_pooling_reads_the_sentence_transformers_config(tmp_path: Path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    pooling = read_pooling(tmp_path)
    assert pooling is not None and pooling.mode == "mean" and pooling.normalize
    assert read_pooling(tmp_path / "1_Pooling") is None
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(SentencePooling("mean")(hidden, mask), torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(pooling(hidden, mask), torch.tensor([[2.0, 2.0]]) / math.sqrt(8))
    torch.testing.assert_close(SentencePooling("cls")(hidden, mask), torch.tensor([[1.0, 0.0]]))


def test_embedding_readout_on_a_tiny_random_encoder(tiny, pool: SentencePool):
    site = neuron_site(tiny.encoder, "ffn")
    vocab = tiny.tokenizer.get_vocab()
    width = site.neurons_per_layer
    readout = EmbeddingReadout(tiny.encoder, SentencePooling("mean", normalize=True), window=8)
    target = AblationTarget("neurons", "t", [width + 1, width + 5, 3], [vocab["monday"], vocab["red"]], ["monday", "red"])
    config = AblationConfig(readouts=("embedding",), sentences=10, draws=4, batch_sentences=6)
    means = np.random.default_rng(0).normal(size=site.n_neurons).astype(np.float32)

    def run(skip: bool):
        return run_ablation([readout], site, tiny.tokenizer, pool, target, config, means=means,
                            encoder=tiny.encoder, skip_clean_blocks=skip)

    result = run(True)
    emb = result.readouts["embedding"]
    m = emb.measures
    assert m.control_sentences == 10 and m.displacement_target > 0 and m.displacement_control > 0
    assert emb.value == pytest.approx(m.displacement_target / m.displacement_control)
    assert all(len(b.draws) == 4 and all(d > 0 for d in b.draws) for b in emb.baselines.values())
    assert result.verdict.readout == "embedding"
    full = run(False).readouts["embedding"]
    assert full.value == pytest.approx(emb.value, rel=1e-5)
    assert full.baselines["random"].draws == pytest.approx(emb.baselines["random"].draws, rel=1e-5)
    data = json.loads(json.dumps(result.to_json()))
    assert data["verdict"]["readout"] == "embedding" and set(data["verdict"]) >= {"passed", "beats", "p"}
    assert AblationResult.from_json(data).to_json() == data


def test_embedding_readout_says_so_without_controls(tiny):
    readout = EmbeddingReadout(tiny.encoder, SentencePooling())
    with pytest.raises(NeurosearchError, match="control"):
        readout.batches(tiny.tokenizer, [[5, 6, 7]], [], {5}, np.random.default_rng(0), 4)


def test_context_masking_keeps_targets_visible(tiny):
    tok = tiny.tokenizer
    vocab = tok.get_vocab()
    sentence = [vocab[w] for w in "the dog and the cat was".split()]
    batch = mask_sentences(tok, [sentence], {vocab["dog"]}, np.random.default_rng(0), context=True)
    row = batch.input_ids[0].tolist()
    assert row[2] == vocab["dog"]  # visible ([CLS] at 0)
    assert row[1] == tok.mask_token_id and row[3] == tok.mask_token_id  # "the" and "and" beside it
    assert int(batch.is_target.sum()) == 2 and int((~batch.is_target).sum()) == 2
    readout = MaskedLMReadout("mlm-context", OwnHeadMaskedLM(tiny.model), "model")
    assert readout.context


def test_stored_results_are_read_once_and_again_when_their_file_changes(tiny_index: Path, tmp_path: Path, monkeypatch):
    """``report`` asks for the stored result of every neuron: the store is parsed once, yet a
    result stored while the index is open is found."""
    import shutil

    from neurosearch.index import Index
    from neurosearch.index import stored

    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))
    index = Index.load(copy)
    neurons = index.cluster("filter/k3/0").neurons
    parsed = []
    real = stored.ablation_results
    monkeypatch.setattr(stored, "ablation_results", lambda state: parsed.append(1) or real(state))
    assert index.ablation_for("cluster", "filter/k3/0", neurons).current is None
    result = AblationResult.from_json(_v1(neurons))
    stored.store_ablation(index.state, result)
    for _ in range(3):
        assert index.ablation_for("cluster", "filter/k3/0", neurons).current is not None
    assert len(parsed) == 2
