"""Labelling against a real ``openai`` client talking to a local fake chat-completions server."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from fake_llm import GOOD, FakeLLM, Reply

from neurosearch.labeling.llm import (
    Label,
    LabelConfig,
    LabelError,
    LabelRequest,
    fallback_label,
    label_items,
    load_labels,
    parse_reply,
    save_labels,
)

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    names = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY")
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    for name in names + proxies + tuple(p.lower() for p in proxies):
        monkeypatch.delenv(name, raising=False)


def cfg(llm: FakeLLM | None = None, **kw) -> LabelConfig:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_seconds", 0.01)
    return LabelConfig(base_url=llm.base_url if llm else None, **kw)


def reqs(*names: str) -> list[LabelRequest]:
    return [LabelRequest("cluster", f"filter/k200/{name}", [f"tok{name}", "monday", "##day"],
                         [f"on tok{name} we met"]) for name in names]


def populate(llm: FakeLLM, store: Path, names=("a", "b")) -> bytes:
    run = label_items(reqs(*names), store, cfg(llm), api_key=KEY)
    assert run.ok and run.labelled == len(names)
    return store.read_bytes()


# ------------------------------------------------------------------------------- happy path


def test_normal_reply_is_stored(llm, tmp_path):
    store = tmp_path / "labels.json"
    requests = reqs("a") + [LabelRequest("neuron", "3:1021", ["cat", "dog"], [])]
    run = label_items(requests, store, cfg(llm), api_key=KEY)
    assert run.ok and (run.labelled, run.cached, run.failed) == (2, 0, 0)

    labels = load_labels(store)
    assert set(labels) == {"cluster:filter/k200/a", "neuron:3:1021"}
    label = labels["neuron:3:1021"]
    assert (label.theme, label.source, label.model) == ("days of the week", "llm", "gpt-4o-mini")
    assert len(label.prompt_hash) == 64
    data = json.loads(store.read_text())
    assert data["version"] == 1 and set(data["labels"]["neuron:3:1021"]) == {
        "theme", "explanation", "model", "prompt_hash", "source"}

    first = llm.seen[0]
    assert first.body["response_format"] == {"type": "json_object"}
    assert first.body["model"] == "gpt-4o-mini"
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert "toka" in first.prompt and "on toka we met" in first.prompt
    assert KEY not in store.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.json.lock", "labels.json"]  # no temp files left


def test_code_fenced_reply_is_accepted(llm, tmp_path):
    llm.respond = lambda s, n: Reply(content=f"```json\n{GOOD}\n```")
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.ok and load_labels(tmp_path / "labels.json")["cluster:filter/k200/a"].theme == \
        "days of the week"


def test_key_from_environment_and_placeholder_for_local_server(llm, tmp_path, monkeypatch):
    label_items(reqs("a"), tmp_path / "l1.json", cfg(llm))
    assert llm.seen[-1].headers["authorization"] == "Bearer not-needed"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    label_items(reqs("a"), tmp_path / "l2.json", cfg(llm))
    assert llm.seen[-1].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in (tmp_path / "l2.json").read_text()


def test_progress_reports_every_item(llm, tmp_path):
    store = tmp_path / "labels.json"
    populate(llm, store, ("a",))
    calls = []
    label_items(reqs("a", "b"), store, cfg(llm), api_key=KEY,
                on_progress=lambda done, total, r, out: calls.append((done, total, r.id, out)))
    assert calls == [(1, 2, "filter/k200/a", "cached"), (2, 2, "filter/k200/b", "labelled")]


# ---------------------------------------------------------------------------- cache, stale


def test_second_run_labels_nothing_new(llm, tmp_path):
    store = tmp_path / "labels.json"
    before = populate(llm, store, ("a", "b"))
    n = len(llm.seen)
    run = label_items(reqs("a", "b"), store, cfg(llm), api_key=KEY)
    assert (run.labelled, run.cached) == (0, 2) and run.ok
    assert len(llm.seen) == n and store.read_bytes() == before


def test_cached_run_needs_no_key(llm, tmp_path):
    store = tmp_path / "labels.json"
    populate(llm, store, ("a",))
    run = label_items(reqs("a"), store, cfg(None))  # no key, no base_url, nothing to do
    assert run.cached == 1 and run.ok


def test_force_relabels(llm, tmp_path):
    store = tmp_path / "labels.json"
    populate(llm, store, ("a", "b"))
    llm.respond = lambda s, n: Reply(content='{"theme": "weekdays", "explanation": "Days."}')
    run = label_items(reqs("a", "b"), store, cfg(llm), api_key=KEY, force=True)
    assert (run.labelled, run.cached) == (2, 0)
    assert {label.theme for label in load_labels(store).values()} == {"weekdays"}


def test_stale_prompt_hash_or_model_is_relabelled(llm, tmp_path):
    store = tmp_path / "labels.json"
    populate(llm, store, ("a", "b"))
    data = json.loads(store.read_text())
    data["labels"]["cluster:filter/k200/a"]["prompt_hash"] = "0" * 64
    store.write_text(json.dumps(data))
    n = len(llm.seen)
    run = label_items(reqs("a", "b"), store, cfg(llm), api_key=KEY)
    assert (run.labelled, run.cached) == (1, 1)
    assert llm.count("toka") == 2 and len(llm.seen) == n + 1
    assert load_labels(store)["cluster:filter/k200/a"].prompt_hash != "0" * 64

    run = label_items(reqs("a", "b"), store, cfg(llm, llm_model="local-7b"), api_key=KEY)
    assert run.labelled == 2 and llm.seen[-1].body["model"] == "local-7b"
    assert {label.model for label in load_labels(store).values()} == {"local-7b"}


def test_fallback_label_in_store_is_replaced(llm, tmp_path):
    store = tmp_path / "labels.json"
    save_labels(store, {"cluster:filter/k200/a": fallback_label(["toka", "monday"])})
    run = label_items(reqs("a"), store, cfg(llm), api_key=KEY)
    assert run.labelled == 1 and load_labels(store)["cluster:filter/k200/a"].source == "llm"


# -------------------------------------------------------------------------------- failures


def test_junk_reply_is_reasked_then_recorded(llm, tmp_path):
    store = tmp_path / "labels.json"
    llm.respond = lambda s, n: Reply(content="Sure! Days.") if "tokb" in s.prompt else Reply()
    run = label_items(reqs("a", "b", "c"), store, cfg(llm), api_key=KEY)
    assert run.failures == {"junk": ["cluster:filter/k200/b"]}
    assert (run.labelled, run.failed) == (2, 1) and not run.ok and run.aborted is None
    assert llm.count("tokb") == 2  # junk_retries=1: asked once more
    reask = [s for s in llm.seen if "tokb" in s.body["messages"][1]["content"]][-1]
    last = reask.body["messages"][-1]
    assert last["role"] == "user" and "JSON" in last["content"]
    assert set(load_labels(store)) == {"cluster:filter/k200/a", "cluster:filter/k200/c"}
    assert len(run.messages) == 1 and run.messages[0].startswith("cluster:filter/k200/b: junk")


def test_junk_then_valid_on_reask(llm, tmp_path):
    llm.respond = lambda s, n: Reply(content="{oops") if len(s.body["messages"]) == 2 else Reply()
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.ok and run.labelled == 1


def test_non_json_http_body_is_junk(llm, tmp_path):
    llm.respond = lambda s, n: Reply(raw=b"<html>gateway says hi</html>")
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm, junk_retries=0), api_key=KEY)
    assert set(run.failures) == {"junk"}


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"theme": 3, "explanation": "x"}',
     '{"theme": "one two three four five six seven", "explanation": "x"}',
     '{"theme": "days", "explanation": "  "}', '{"explanation": "x"}'],
)
def test_parse_reply_rejects_wrong_shape(text):
    with pytest.raises(ValueError):
        parse_reply(text)


def test_parse_reply_tolerates_fences_and_prose():
    assert parse_reply(f"```\n{GOOD}\n```") == ("days of the week", "Names of weekdays.")
    assert parse_reply(f"<think>hmm {{</think>Here you go: {GOOD} Hope it helps.")[0] == \
        "days of the week"


def test_500_is_retried_then_recorded(llm, tmp_path):
    llm.respond = lambda s, n: Reply(500, "boom")
    config = cfg(llm, max_retries=2)
    run = label_items(reqs("a", "b"), tmp_path / "labels.json", config, api_key=KEY)
    assert run.failures == {"http 500": ["cluster:filter/k200/a", "cluster:filter/k200/b"]}
    assert llm.count("toka") == 3 and run.aborted is None
    assert "boom" in run.messages[0] and not (tmp_path / "labels.json").exists()


def test_500_then_recovery_succeeds(llm, tmp_path):
    llm.respond = lambda s, n: Reply(500) if n == 1 else Reply()
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.ok and run.labelled == 1 and llm.count("toka") == 2


def test_429_then_success(llm, tmp_path):
    llm.respond = lambda s, n: Reply(429, "slow down") if n == 1 else Reply()
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.ok and "cluster:filter/k200/a" in load_labels(tmp_path / "labels.json")


def test_429_exhausted_is_rate_limit(llm, tmp_path):
    llm.respond = lambda s, n: Reply(429)
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm, max_retries=1), api_key=KEY)
    assert run.failures == {"rate-limit": ["cluster:filter/k200/a"]} and llm.count("toka") == 2


def test_slow_reply_times_out(llm, tmp_path):
    llm.respond = lambda s, n: Reply(delay=1.5)
    start = time.monotonic()
    run = label_items(reqs("a"), tmp_path / "labels.json", cfg(llm, timeout=0.5, max_retries=1),
                      api_key=KEY)
    assert run.failures == {"timeout": ["cluster:filter/k200/a"]} and run.aborted is None
    assert time.monotonic() - start < 3.0


def test_refused_port_aborts_without_hammering(llm, tmp_path):
    store = tmp_path / "labels.json"
    before = populate(llm, store, ("a",))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LabelConfig(base_url=f"http://127.0.0.1:{port}/v1", backoff_seconds=0.01, timeout=2)
    start = time.monotonic()
    run = label_items(reqs("a", "b", "c", "d"), store, config, api_key=KEY, force=True)
    assert run.failures == {"connection": ["cluster:filter/k200/a"]}
    assert (run.failed, run.skipped, run.labelled) == (1, 3, 0)
    assert run.aborted and "cannot reach" in run.aborted and not run.ok
    assert time.monotonic() - start < 2.0
    assert store.read_bytes() == before


def test_server_lost_mid_run_is_retried_then_aborts(llm, tmp_path):
    store = tmp_path / "labels.json"

    def stop_server(done, total, request, outcome):
        if done == 1:
            llm.stop()

    run = label_items(reqs("a", "b", "c"), store, cfg(llm, max_retries=2), api_key=KEY,
                      on_progress=stop_server)
    assert run.labelled == 1 and run.failures == {"connection": ["cluster:filter/k200/b"]}
    assert run.skipped == 1 and run.aborted and "3 attempt(s)" in run.messages[0]
    assert set(load_labels(store)) == {"cluster:filter/k200/a"}


def test_no_key_and_no_base_url_fails_before_any_request(tmp_path):
    with pytest.raises(LabelError, match="OPENAI_API_KEY is not set.*base_url"):
        label_items(reqs("a"), tmp_path / "labels.json", LabelConfig())
    assert not (tmp_path / "labels.json").exists()


def test_openai_named_as_base_url_needs_the_key_too(tmp_path):
    with pytest.raises(LabelError, match="OPENAI_API_KEY is not set"):  # not the placeholder that local servers get
        label_items(reqs("a"), tmp_path / "labels.json", LabelConfig(base_url="https://API.openai.com/v1/"))
    assert not (tmp_path / "labels.json").exists()


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_errors_abort_and_key_is_scrubbed(llm, tmp_path, status):
    store = tmp_path / "labels.json"
    before = populate(llm, store, ("a",))
    n = len(llm.seen)
    llm.respond = lambda s, n: Reply(status, f"Incorrect API key provided: {KEY}")
    run = label_items(reqs("a", "b", "c"), store, cfg(llm), api_key=KEY, force=True)
    assert run.failures == {f"http {status}": ["cluster:filter/k200/a"]} and run.skipped == 2
    assert len(llm.seen) == n + 1 and run.aborted
    assert all(KEY not in m for m in run.messages) and "Incorrect API key" in run.messages[0]
    assert store.read_bytes() == before


def test_other_4xx_is_recorded_and_run_goes_on(llm, tmp_path):
    llm.respond = lambda s, n: Reply(422, "bad input") if "toka" in s.prompt else Reply()
    run = label_items(reqs("a", "b"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.failures == {"http 422": ["cluster:filter/k200/a"]} and run.labelled == 1
    assert llm.count("toka") == 1


def test_rejected_response_format_is_dropped(llm, tmp_path):
    llm.respond = lambda s, n: (Reply(400, "response_format not supported")
                                if "response_format" in s.body else Reply())
    run = label_items(reqs("a", "b"), tmp_path / "labels.json", cfg(llm), api_key=KEY)
    assert run.ok and run.labelled == 2
    assert ["response_format" in s.body for s in llm.seen] == [True, False, False]


def test_failing_runs_keep_stored_labels_byte_for_byte(llm, tmp_path):
    store = tmp_path / "labels.json"
    before = populate(llm, store, ("a", "b"))
    scenarios = [
        lambda s, n: Reply(500),
        lambda s, n: Reply(content="junk"),
        lambda s, n: Reply(429),
        lambda s, n: Reply(401),
    ]
    for respond in scenarios:
        llm.respond = respond
        run = label_items(reqs("a", "b"), store, cfg(llm, max_retries=1), api_key=KEY, force=True)
        assert not run.ok and run.labelled == 0
        assert store.read_bytes() == before
    assert KEY not in store.read_text()


def test_interrupted_run_keeps_received_labels(llm, tmp_path):
    store = tmp_path / "labels.json"

    def stop_after_first(done, total, request, outcome):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_items(reqs("a", "b", "c"), store, cfg(llm), api_key=KEY, on_progress=stop_after_first)
    assert set(load_labels(store)) == {"cluster:filter/k200/a"}


# --------------------------------------------------------------------------------- store


def test_load_labels_missing_and_corrupt(tmp_path):
    store = tmp_path / "labels.json"
    assert load_labels(store) == {}
    for text in ("{not json", '{"version": 2, "labels": {}}', '{"version": 1, "labels": []}',
                 '{"version": 1, "labels": {"cluster:x": {"theme": "a"}}}'):
        store.write_text(text)
        with pytest.raises(LabelError, match="labels.json"):
            load_labels(store)


def test_corrupt_store_fails_before_any_request(llm, tmp_path):
    store = tmp_path / "labels.json"
    store.write_text("{")
    with pytest.raises(LabelError, match="corrupt"):
        label_items(reqs("a"), store, cfg(llm), api_key=KEY)
    assert llm.seen == [] and store.read_text() == "{"


def test_save_and_load_round_trip(tmp_path):
    labels = {"neuron:3:7": Label("days", "Weekdays.", "m", "h", "llm"),
              "cluster:f/k50/1": fallback_label(["a", "b"])}
    save_labels(tmp_path / "idx" / "labels.json", labels)
    assert load_labels(tmp_path / "idx" / "labels.json") == labels
    assert [p.name for p in (tmp_path / "idx").iterdir()] == ["labels.json"]


# ------------------------------------------------------------------------------- fallback


def test_fallback_skips_fragments_and_punctuation():
    tokens = ["##s", ",", "monday", "[UNK]", "tuesday", "Monday", "...", "sunday", "friday"]
    label = fallback_label(tokens, None)
    assert label.theme == "monday / tuesday / sunday"
    assert label.source == "fallback"
    assert label.explanation == "Most central top tokens (no LLM label)."
    assert fallback_label(tokens, None) == label


def test_fallback_picks_most_central_tokens_with_vectors():
    rng = np.random.default_rng(0)
    tokens = ["cat", "##ing", "monday", "car", "tuesday", "sunday", "!"]
    day = np.zeros(16)
    day[0] = 1.0
    vectors = rng.normal(size=(len(tokens), 16)) * 0.3
    for i in (2, 4, 5):
        vectors[i] += day * 3
    label = fallback_label(tokens, vectors.astype(np.float16))
    assert label.theme == "monday / tuesday / sunday"
    assert fallback_label(tokens, vectors.astype(np.float16)) == label


def test_fallback_edge_cases():
    assert fallback_label(["##ing", "##ed"], None).theme == "##ing / ##ed"
    assert fallback_label(["cat"], np.ones((1, 4))).theme == "cat"
    assert fallback_label([], None).theme == "(no tokens)"
    with pytest.raises(ValueError):
        fallback_label(["a", "b"], np.ones((3, 4)))


# ------------------------------------------------------------------------ circuit breaker


def test_consecutive_failures_stop_the_run(llm, tmp_path):
    llm.respond = lambda seen, n: Reply(500)
    run = label_items(reqs(*"abcdef"), tmp_path / "labels.json",
                      cfg(llm, max_retries=0, max_consecutive_failures=3), api_key=KEY)
    assert (run.failed, run.skipped, run.labelled) == (3, 3, 0)
    assert "3 failures in a row" in run.aborted and "3 item(s) not attempted" in run.aborted
    assert len(llm.seen) == 3


def test_a_success_resets_the_failure_count(llm, tmp_path):
    llm.respond = lambda seen, n: Reply() if any(f"tok{x}" in seen.prompt for x in "cf") else Reply(500)
    run = label_items(reqs(*"abcdef"), tmp_path / "labels.json",
                      cfg(llm, max_retries=0, max_consecutive_failures=3), api_key=KEY)
    assert run.aborted is None and (run.failed, run.labelled, run.skipped) == (4, 2, 0)


def test_no_circuit_breaker_when_zero(llm, tmp_path):
    llm.respond = lambda seen, n: Reply(500)
    run = label_items(reqs(*"abcdef"), tmp_path / "labels.json",
                      cfg(llm, max_retries=0, max_consecutive_failures=0), api_key=KEY)
    assert run.aborted is None and run.failed == 6


@pytest.mark.parametrize("value", [float("nan"), 0.0, -1.0, float("inf")])
def test_label_config_refuses_bad_timeouts(value):
    from neurosearch.errors import ConfigError

    with pytest.raises(ConfigError, match="timeout"):
        LabelConfig(timeout=value)


def test_parse_reply_strips_controls_and_caps_lengths():
    from neurosearch.text import MAX_EXPLANATION, MAX_THEME

    theme, explanation = parse_reply(json.dumps({"theme": "\x1b]0;t\x07days \u202eof\x00 week",
                                                 "explanation": "x\x1b[2J" * 10_000}))
    assert theme == "]0;tdays of week" and len(explanation) == MAX_EXPLANATION and "\x1b" not in explanation
    theme, _ = parse_reply(json.dumps({"theme": "y" * 10_000_000, "explanation": "e"}))
    assert len(theme) == MAX_THEME and theme.endswith("…")


def test_label_help_says_where_the_key_goes():
    from typer.testing import CliRunner

    from neurosearch.cli.app import app

    text = " ".join(CliRunner().invoke(app, ["label", "--help"]).stdout.split())
    assert "OPENAI_API_KEY" in text and "sent to this server" in text
