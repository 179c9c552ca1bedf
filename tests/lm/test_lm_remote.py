"""The remote backend against the fake OpenAI-compatible server (tests/fake_llm.py), faults included."""

from __future__ import annotations

import json
import re
import socket

import pytest
from fake_llm import Reply

from neurosearch.lm import LanguageModel, LMError, LMSpec, load_language_model

PROMPT = "Examples of fruits: apple, banana\nExamples of weekdays:"


def word_logprob(token: str) -> float:
    """The fake model's log-probability of a token: longer words are less likely."""
    return -0.25 * len(token.strip()) - 0.1


def echo_body(prompts: list[str]) -> dict:
    """A completions reply echoing each prompt as tokens of ``\\s*\\S+``, plus one generated token."""
    choices = []
    for index, text in enumerate(prompts):
        tokens = [*re.findall(r"\s*\S+", text), " zzz"]
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        values = [None] + [word_logprob(t) for t in tokens[1:]]
        choices.append({"index": index, "text": text + " zzz", "finish_reason": "length",
                        "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                                     "top_logprobs": None}})
    return {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "m", "choices": choices}


def completions(seen, n) -> Reply:
    body = seen.body
    if body.get("echo"):
        return Reply(body=echo_body(body["prompt"]))
    text = " Monday, Tuesday\nExamples of"
    return Reply(body={"id": "cmpl-2", "object": "text_completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]})


def top_logprobs(*pairs: tuple[str, float]) -> dict:
    top = [{"token": t, "logprob": v, "bytes": None} for t, v in pairs]
    return {"content": [{**top[0], "top_logprobs": top}]}


def remote(llm, **fields) -> LanguageModel:
    return load_language_model(f"{llm.base_url}#fake-model", **{"max_retries": 1, "timeout": 5.0, **fields})


def test_echo_scores_follow_the_rules_of_the_interface(llm):
    llm.complete = completions
    lm = remote(llm)
    assert isinstance(lm, LanguageModel)
    assert (lm.identity.backend, lm.name, lm.identity.key) == ("remote", "fake-model", f"remote:fake-model@{llm.base_url}")
    first = lm.next_token_logprobs(PROMPT, [" Monday", " Tuesday Wednesday", " kiwi"])
    assert [(s.logprob, s.tokens, s.exact) for s in first] == [
        (pytest.approx(word_logprob(" Monday")), 1, True),
        (pytest.approx(word_logprob(" Tuesday")), 2, True),  # the first token's only
        (pytest.approx(word_logprob(" kiwi")), 1, True)]
    whole = lm.continuation_logprobs(PROMPT, [" Monday", " Tuesday Wednesday"])
    assert whole[1].logprob == pytest.approx(word_logprob(" Tuesday") + word_logprob(" Wednesday"))
    assert lm.continuation_logprob(PROMPT, " Monday") == pytest.approx(word_logprob(" Monday"))
    request = llm.seen[0].body
    assert request["echo"] is True and request["logprobs"] == 1 and request["temperature"] == 0
    assert request["prompt"] == [PROMPT + " Monday", PROMPT + " Tuesday Wednesday", PROMPT + " kiwi"]


def test_echo_batches_many_candidates(llm):
    llm.complete = completions
    words = [f" w{i}" for i in range(70)]
    scores = remote(llm).next_token_logprobs(PROMPT, words)
    assert [s.text for s in scores] == words and len(llm.seen) == 3  # 32 + 32 + 6


def test_generate_uses_completions_and_cuts_at_stop(llm):
    llm.complete = completions
    lm = remote(llm)
    assert lm.generate(PROMPT, max_tokens=10, stop=["\n"]) == " Monday, Tuesday"
    assert llm.seen[-1].body["stop"] == ["\n"] and llm.seen[-1].body["max_tokens"] == 10
    assert lm.generate(PROMPT, max_tokens=10) == " Monday, Tuesday\nExamples of"


def test_a_chat_server_with_top_logprobs_gives_estimates(llm):
    llm.respond = lambda seen, n: Reply(content="Monday", logprobs=top_logprobs(
        ("Monday", -0.4), (" Mon", -1.0), ("Sunday", -1.5), ("car", -3.0), ("\n", -4.0)))
    lm = remote(llm)
    scores = lm.next_token_logprobs(PROMPT, [" Monday", " Monk", " carrot", " kiwi"])
    assert [(s.logprob, s.exact, s.tokens) for s in scores] == [
        (-0.4, False, None),  # the longest top token that begins it
        (-1.0, False, None),
        (-3.0, False, None),
        (-4.0, False, None)]  # none begins it: the lowest top log-probability
    probe = llm.seen[-1].body
    assert probe["logprobs"] is True and probe["top_logprobs"] == 20 and probe["max_tokens"] == 1
    assert probe["messages"] == [{"role": "user", "content": PROMPT}]
    asked = len(llm.seen)
    lm.next_token_logprobs(PROMPT, [" Monday"])
    assert len(llm.seen) == asked + 1  # what the server cannot do is not asked again


def stated(seen, n) -> Reply:
    if seen.body.get("logprobs"):
        return Reply(content="Monday")  # logprobs asked for, none returned
    asked = json.loads(seen.body["messages"][1]["content"].split("Candidates (JSON list): ")[1].splitlines()[0])
    return Reply(content=json.dumps({"probabilities": {c.strip(): (0.9 if "Mon" in c else 0.01) for c in asked}}))


def test_without_log_probabilities_a_structured_prompt_is_used(llm):
    import math

    llm.respond = stated
    lm = remote(llm)
    scores = lm.next_token_logprobs(PROMPT, [" Monday", " carrot"])
    assert [(s.logprob, s.exact) for s in scores] == [(pytest.approx(math.log(0.9)), False),
                                                      (pytest.approx(math.log(0.01)), False)]
    assert lm.continuation_logprob(PROMPT, " Monday Tuesday") == pytest.approx(math.log(0.9))
    ask = llm.seen[-1].body
    assert ask["response_format"] == {"type": "json_object"} and PROMPT in ask["messages"][1]["content"]


def test_generate_falls_back_to_chat(llm):
    llm.respond = lambda seen, n: Reply(content="Monday, Tuesday\nmore")
    lm = remote(llm)
    assert lm.generate(PROMPT, max_tokens=5, stop=["\n"]) == "Monday, Tuesday"
    assert [s.body.get("messages") is None for s in llm.seen] == [True, False]  # completions, then chat


def test_scoring_can_be_chosen(llm):
    llm.complete = completions
    llm.respond = stated
    lm = remote(llm, scoring="json")
    assert lm.next_token_logprobs(PROMPT, [" Monday"])[0].exact is False
    assert all("messages" in s.body for s in llm.seen)


def one_line_error(call) -> str:
    with pytest.raises(LMError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_server_errors_are_one_line_after_the_retries(llm):
    llm.complete = lambda seen, n: Reply(500, "overloaded")
    message = one_line_error(lambda: remote(llm, scoring="echo").next_token_logprobs(PROMPT, [" Monday"]))
    assert message.startswith(f"language model server {llm.base_url}: http 500: HTTP 500: overloaded")
    assert "2 attempt(s)" in message and len(llm.seen) == 2


def test_a_timeout_is_one_line(llm):
    llm.respond = lambda seen, n: Reply(content="late", delay=1.0)
    message = one_line_error(lambda: remote(llm, timeout=0.2, max_retries=0, scoring="json").generate(PROMPT))
    assert ": timeout: no reply within 0.2 s" in message


def test_garbage_is_one_line(llm):
    llm.complete = lambda seen, n: Reply(raw=b"<html>not json</html>")
    message = one_line_error(lambda: remote(llm, scoring="echo").next_token_logprobs(PROMPT, [" Monday"]))
    assert ": junk: unreadable response" in message


def test_an_echo_without_log_probabilities_is_junk_when_echo_was_chosen(llm):
    llm.complete = lambda seen, n: Reply(body={"id": "x", "object": "text_completion", "created": 0, "model": "m",
                                               "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}]})
    message = one_line_error(lambda: remote(llm, scoring="echo").next_token_logprobs(PROMPT, [" Monday"]))
    assert "junk: the reply has no log-probabilities" in message


def test_a_reply_that_is_never_the_json_asked_for_is_one_line(llm):
    llm.respond = lambda seen, n: Reply(content="I think Monday is likely.")
    message = one_line_error(lambda: remote(llm).next_token_logprobs(PROMPT, [" Monday"]))
    assert ": junk: not JSON after 2 attempt(s)" in message


def test_an_unreachable_server_is_one_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lm = load_language_model(f"http://127.0.0.1:{port}/v1#m", max_retries=0, timeout=2.0)
    message = one_line_error(lambda: lm.generate(PROMPT))
    assert message.startswith(f"language model server http://127.0.0.1:{port}/v1: connection: cannot reach it")


def test_the_api_key_never_appears_in_an_error(llm):
    secret = "sk-test-very-secret-123"
    llm.complete = lambda seen, n: Reply(401, f"bad key {seen.headers['authorization']}")
    lm = load_language_model(f"{llm.base_url}#m", api_key=secret, scoring="echo")
    message = one_line_error(lambda: lm.next_token_logprobs(PROMPT, [" Monday"]))
    assert "http 401" in message and secret not in message and "***" in message
    assert llm.seen[0].headers["authorization"] == f"Bearer {secret}"


@pytest.mark.parametrize("fields, message", [
    ({"base_url": "http://x/v1"}, "needs the model name"),
    ({"base_url": "ftp://x", "model": "m"}, "must start with http"),
    ({"base_url": "http://x/v1", "model": "m", "path": "a.gguf"}, "not both"),
    ({"path": "a.gguf", "sha256": "abc"}, "64 hexadecimal digits"),
    ({"path": "model-dir", "sha256": "0" * 64}, "for a .gguf path only"),
    ({"scoring": "guess"}, "scoring must be one of"),
])
def test_bad_specs_are_refused_before_any_work(fields, message):
    from neurosearch.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        LMSpec(**fields)


def test_specs_parse_from_one_string(tmp_path):
    from pathlib import Path

    assert LMSpec.parse(None) == LMSpec.parse("local") == LMSpec()
    assert LMSpec.parse("http://127.0.0.1:8080/v1#gemma") == LMSpec(base_url="http://127.0.0.1:8080/v1", model="gemma")
    assert LMSpec.parse("https://api.example/v1", model="m").model == "m"
    assert LMSpec.parse("~/models/x.gguf").path == Path("~/models/x.gguf").expanduser()
    assert LMSpec.parse(tmp_path, batch_size=2) == LMSpec(path=tmp_path, batch_size=2)
    assert LMSpec(base_url="http://x/v1", model="m").kind == "remote" and LMSpec().kind == "local"
