"""A language model's membership scores: the scorer on a tiny random causal LM, and a build whose
concept expansions use them (scored once, kept block by block, reused when only the coefficients
change), and a novel phrase scored the same way at query time."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from neurosearch.lm.base import Identified
from neurosearch.lm.membership import BASELINE, FLOOR, PROMPT, MembershipScorer


def test_scores_are_first_token_logprobs_and_non_words_get_the_floor(tiny_lm):
    tokens = ["monday", "apple", "##ing", "42", "dog"]
    scorer = MembershipScorer(tiny_lm, tokens)
    scores = scorer.scores(["fruits", "weekdays"])
    assert scores.shape == (2, 5) and scores.dtype == np.float32
    assert (scores[:, 2:4] == FLOOR).all()
    for row, concept in enumerate(["fruits", "weekdays"]):
        expected = tiny_lm.next_token_logprobs(PROMPT.format(concept=concept), [" monday", " apple", " dog"])
        assert scores[row, [0, 1, 4]] == pytest.approx([max(s.logprob, FLOOR) for s in expected], abs=1e-5)
    assert scorer.baseline == pytest.approx(scorer.scores([BASELINE])[0])
    assert not scorer.partial.any()  # a word-level tokenizer: every word is one token
    assert scorer.scores([]).shape == (0, 5)


def test_the_local_table_is_the_generic_one(tiny_lm):
    prompts = [PROMPT.format(concept=c) for c in ("fruits", "weekdays", "a b c")]
    candidates = [" monday", " apple", " red"]
    fast, fast_tokens = tiny_lm.first_token_table(prompts, candidates)
    slow, slow_tokens = Identified.first_token_table(tiny_lm, prompts, candidates)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert fast_tokens.tolist() == slow_tokens.tolist() == [1, 1, 1]


def _build(out: Path, tiny_model: Path, tiny_corpus: Path, expansion) -> object:
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
    from neurosearch.pipeline import build_index

    config = BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, methods=("filter+smooth+tfidf",)),
        clusters=ClusterConfig(ks=(3,)),
        expansion=expansion,
    )
    return build_index(config, out, until="search")


def test_a_build_scores_every_key_once_and_reuses_the_scores(tmp_path, tiny_model, tiny_corpus, tiny_lm_dir, monkeypatch):
    from neurosearch.config import ExpansionConfig
    from neurosearch.format import layout

    out = tmp_path / "index"
    expansion = ExpansionConfig(language_model=str(tiny_lm_dir))
    manifest = _build(out, tiny_model, tiny_corpus, expansion)
    keys = json.loads((out / layout.EXPANSION_KEYS).read_text())
    record = keys["language_model"]
    assert record["identity"].startswith("local:tiny-llama@") and record["spec"] == str(tiny_lm_dir)
    assert record["keys_scored"] == len(keys["keys"]) > 0 and record["keys_reused"] == 0
    assert manifest.stages["search"]["language_model"] == record["identity"]
    blocks = sorted((out / layout.LM_SCORES_DIR).glob("block-*.npy"))
    assert blocks and sum(len(np.load(b)) for b in blocks) == len(keys["keys"])
    method_file = out / layout.cluster_keys_file("filter+smooth+tfidf")
    before = method_file.read_bytes(), method_file.stat().st_mtime_ns

    # other coefficients: only the expansions are computed again, from the kept scores (no model load)
    import neurosearch.lm

    def no_load(*args, **kwargs):
        raise AssertionError("the language model was loaded although every score was kept")

    monkeypatch.setattr(neurosearch.lm, "load_language_model", no_load)
    changed = replace(expansion, lm_intercept=expansion.lm_intercept + 3.0)
    manifest = _build(out, tiny_model, tiny_corpus, changed)
    again = json.loads((out / layout.EXPANSION_KEYS).read_text())
    assert again["language_model"]["keys_reused"] == len(keys["keys"]) and again["language_model"]["keys_scored"] == 0
    assert again["config"]["lm_intercept"] == pytest.approx(changed.lm_intercept)
    assert (method_file.read_bytes(), method_file.stat().st_mtime_ns) == before
    assert manifest.stages["search"]["done"] and "expansions_only" not in manifest.stages["search"]
    heavier = np.load(out / layout.expansion_array("weights")).astype(np.float32)
    assert heavier.size > 0

    # the same index without a language model: computed again, and says it has none
    monkeypatch.undo()
    _build(out, tiny_model, tiny_corpus, ExpansionConfig())
    assert json.loads((out / layout.EXPANSION_KEYS).read_text())["language_model"] is None


def test_a_novel_phrase_is_scored_with_the_index_language_model(tmp_path, tiny_model, tiny_corpus, tiny_lm_dir):
    from neurosearch import Index
    from neurosearch.config import ExpansionConfig
    from neurosearch.model.phrases import PhraseEmbedder

    out = tmp_path / "index"
    _build(out, tiny_model, tiny_corpus, ExpansionConfig(language_model=str(tiny_lm_dir)))
    index = Index.load(out, embedder=PhraseEmbedder(cache_dir=tmp_path / "cache"))
    expanded = index.expand("happy music band")
    assert any("membership scored by local:tiny-llama@" in note for note in expanded.notes), expanded.notes
    assert expanded.tokens
    again = Index.load(out, embedder=PhraseEmbedder(cache_dir=tmp_path / "cache")).expand("happy music band")
    assert again.as_dict() == pytest.approx(expanded.as_dict(), abs=1e-6)  # kept in the cache (6 decimals)
    assert any("kept from an earlier run" in note for note in again.notes)

    # the model is gone: the phrase is scored without it, and find says so
    moved = tmp_path / "elsewhere"
    shutil.move(str(tiny_lm_dir), str(moved))
    try:
        fallback = Index.load(out, embedder=PhraseEmbedder()).expand("happy music band")
    finally:
        shutil.move(str(moved), str(tiny_lm_dir))
    assert any("language model not used for this phrase" in note for note in fallback.notes), fallback.notes


@pytest.mark.parametrize("lm, fragment", [
    ("/nonexistent/model", "does not exist"),
    ("http://127.0.0.1:9/v1", "--lm http://127.0.0.1:9/v1: a server needs the model name"),
    ("FILE", "neither a model directory nor a .gguf file"),
])
def test_build_refuses_a_language_model_it_cannot_have_before_any_work(tmp_path, tiny_corpus, lm, fragment):
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    if lm == "FILE":  # a file that is not a model
        lm = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("not a model")
    out = tmp_path / "index"
    result = CliRunner().invoke(app, ["build", "--corpus", str(tiny_corpus), "--out", str(out), "--lm", lm, "-q"])
    assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
