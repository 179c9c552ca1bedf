"""The local backend on a tiny random causal LM (built from a config: nothing downloaded)."""

from __future__ import annotations

import math
import shutil
import socket

import pytest

from neurosearch.lm import LanguageModel, LMError, LMSpec, load_language_model

PROMPT = "examples of fruits : apple , banana , cherry . examples of weekdays :"
WORDS = [" monday", " carrot", " tuesday", " apple", " red"]


def direct_logprobs(lm, ids: list[int]):
    """log-softmax at every position of one unpadded sequence, straight from the model."""
    import torch

    with torch.no_grad():
        return torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)


def test_it_is_a_language_model_with_a_local_identity(tiny_lm, tiny_lm_dir):
    assert isinstance(tiny_lm, LanguageModel)
    identity = tiny_lm.identity
    assert (identity.backend, identity.name, tiny_lm.name) == ("local", "tiny-llama", "tiny-llama")
    assert len(identity.digest) == 64 and identity.source == str(tiny_lm_dir.resolve())
    assert identity.key == f"local:tiny-llama@{identity.digest[:16]}"


def test_next_token_logprobs_are_a_distribution_over_the_vocabulary(tiny_lm):
    from lm.tiny_causal_lm import LM_WORDS, SPECIALS

    scores = tiny_lm.next_token_logprobs(PROMPT, [" " + w for w in LM_WORDS])
    assert all(s.exact and s.tokens == 1 and s.logprob <= 0 for s in scores)
    distribution = tiny_lm.next_token_distribution(PROMPT)
    specials = sum(math.exp(float(distribution[i])) for i in range(len(SPECIALS)))
    assert sum(math.exp(s.logprob) for s in scores) + specials == pytest.approx(1.0, abs=1e-4)
    assert float(distribution.exp().sum()) == pytest.approx(1.0, abs=1e-4)


def test_candidates_score_as_a_direct_forward_pass(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    assert prompt_ids[0] == tokenizer.bos_token_id  # the tokenizer's own BOS is kept
    last = direct_logprobs(tiny_lm, prompt_ids)[-1]
    candidates = [*WORDS, " monday tuesday", " apple , banana"]
    scores = tiny_lm.next_token_logprobs(PROMPT, candidates)
    for score, candidate in zip(scores, candidates):
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        assert score.text == candidate and score.tokens == len(ids)
        assert score.logprob == pytest.approx(float(last[ids[0]]), abs=1e-5)  # the first token's


def test_many_prompts_score_as_one_prompt_at_a_time(tiny_lm):
    prompts = ["examples of fruits :", "the red dog is", "a", "monday tuesday wednesday thursday friday"]
    candidates = ["apple", "monday", "carrot potato"]
    many = tiny_lm.next_token_logprobs_many(prompts, candidates)
    for prompt, scored in zip(prompts, many):
        alone = tiny_lm.next_token_logprobs(prompt, candidates)
        assert [s.text for s in scored] == candidates
        assert [s.logprob for s in scored] == pytest.approx([s.logprob for s in alone], abs=1e-4)
        assert [s.tokens for s in scored] == [s.tokens for s in alone]


def test_continuations_sum_their_tokens_as_unpadded_forward_passes(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    continuations = [" monday", " monday tuesday wednesday", " apple , banana , cherry , carrot", " red"]
    scores = tiny_lm.continuation_logprobs(PROMPT, continuations)  # one padded batch
    for score, text in zip(scores, continuations):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows = direct_logprobs(tiny_lm, prompt_ids + ids)
        expected = sum(float(rows[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(ids))
        assert score.tokens == len(ids) and score.logprob == pytest.approx(expected, abs=1e-4)
    assert tiny_lm.continuation_logprob(PROMPT, " monday") == pytest.approx(scores[0].logprob, abs=1e-6)
    first = tiny_lm.next_token_logprobs(PROMPT, [" monday"])[0].logprob
    assert scores[0].logprob == pytest.approx(first, abs=1e-5)  # one token: both rules agree


def test_small_batches_give_the_same_scores(tiny_lm_dir, tmp_path):
    one = load_language_model(LMSpec(path=tiny_lm_dir, cache_dir=tmp_path, batch_size=1))
    four = load_language_model(tiny_lm_dir, cache_dir=tmp_path, batch_size=4)
    texts = [" monday", " monday tuesday", " a , b , c", " carrot potato apple banana", " red"]
    assert [s.logprob for s in one.continuation_logprobs(PROMPT, texts)] == pytest.approx(
        [s.logprob for s in four.continuation_logprobs(PROMPT, texts)], abs=1e-5)


def test_generate_is_greedy_and_deterministic(tiny_lm):
    import torch

    text = tiny_lm.generate(PROMPT, max_tokens=8)
    assert text == tiny_lm.generate(PROMPT, max_tokens=8)
    ids = tiny_lm.tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = tiny_lm.model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected = tiny_lm.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text == expected and text
    words = text.split()
    cut = tiny_lm.generate(PROMPT, max_tokens=8, stop=[words[1]]) if len(words) > 1 else text
    assert text.startswith(cut) and (len(words) < 2 or words[1] not in cut.split())
    assert tiny_lm.generate(PROMPT, max_tokens=1) == words[0]


def test_generate_checks_its_arguments(tiny_lm):
    with pytest.raises(LMError, match="max_tokens"):
        tiny_lm.generate(PROMPT, max_tokens=0)
    with pytest.raises(LMError, match="list of strings"):
        tiny_lm.generate(PROMPT, stop="\n")


def test_an_empty_prompt_starts_from_the_bos_token(tiny_lm):
    scores = tiny_lm.next_token_logprobs("", [" monday", " apple"])
    bos = tiny_lm.tokenizer.bos_token_id
    row = direct_logprobs(tiny_lm, [bos])[-1]
    monday = tiny_lm.tokenizer.convert_tokens_to_ids("monday")
    assert scores[0].logprob == pytest.approx(float(row[monday]), abs=1e-5)


def test_the_directory_digest_follows_its_files(tiny_lm_dir, tmp_path):
    copy = shutil.copytree(tiny_lm_dir, tmp_path / "copy")
    first = load_language_model(copy, cache_dir=tmp_path / "cache").identity.digest
    assert load_language_model(copy, cache_dir=tmp_path / "cache").identity.digest == first
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    assert load_language_model(copy, cache_dir=tmp_path / "cache").identity.digest != first


def test_a_directory_without_safetensors_is_refused(tiny_lm_dir, tmp_path):
    copy = shutil.copytree(tiny_lm_dir, tmp_path / "pickled")
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(LMError, match=r"no \.safetensors weights \(pytorch_model\.bin is a pickle") as caught:
        load_language_model(copy, cache_dir=tmp_path / "cache")
    assert "\n" not in str(caught.value)


def test_a_directory_that_needs_its_own_code_is_refused(tiny_lm_dir, tmp_path):
    import json

    copy = shutil.copytree(tiny_lm_dir, tmp_path / "custom")
    config = json.loads((copy / "config.json").read_text())
    config.update(model_type="my_own_llama", auto_map={"AutoModelForCausalLM": "modeling.MyModel"})
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "modeling.py").write_text("raise SystemExit('model code ran')\n")
    with pytest.raises(LMError, match="cannot load the language model") as caught:
        load_language_model(copy, cache_dir=tmp_path / "cache")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("path, message", [
    ("missing", "does not exist"),
    ("notes.txt", "neither a model directory nor a .gguf file"),
    ("empty-dir", "not a model directory"),
])
def test_paths_that_are_not_models_are_refused(tmp_path, path, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(LMError, match=message):
        load_language_model(tmp_path / path, cache_dir=tmp_path / "cache")


def test_nothing_reaches_the_network(tiny_lm_dir, tmp_path, monkeypatch):
    """Loading, scoring and generating open no socket to anywhere (the hub included)."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    lm = load_language_model(LMSpec(path=tiny_lm_dir, cache_dir=tmp_path))
    lm.next_token_logprobs(PROMPT, WORDS)
    lm.continuation_logprobs(PROMPT, WORDS)
    lm.generate(PROMPT, max_tokens=4)
    assert attempts == []
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
