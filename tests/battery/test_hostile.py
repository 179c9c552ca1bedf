"""Hostile text from outside (LLM labels and replies, corpus contexts, queries) never reaches the terminal raw.

Tables show it without control characters, bidi controls or rich markup, and capped in length;
``--json`` keeps it exact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from battery.battery_kit import cli
from fake_llm import Reply

from neurosearch.text import MAX_EXPLANATION, MAX_THEME, for_terminal

RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
HOSTILE = [
    "\x1b]0;pwned\x07 window title",
    "\x1b[2J\x1b[31mscreen cleared",
    "\x1b]8;;http://evil.example\x1b\\click me\x1b]8;;\x1b\\",
    "abc\u202eevil\u2066x\u2069",
    "nul\x00byte\x7fdel",
    "[/] [bold red]markup[/bold red]",
    "\x9b31m c1 csi",
]


def _labels(index: Path) -> dict[str, dict[str, str]]:
    manifest = json.loads((index / "manifest.json").read_text())
    keys = [f"neuron:{layer}:{i}" for layer in range(manifest["n_layers"]) for i in range(manifest["neurons_per_layer"])]
    keys += [f"cluster:filter/k{k}/{i}" for k in manifest["configs"]["clusters"]["ks"] for i in range(k)]
    labels = {}
    for n, key in enumerate(keys):
        theme = HOSTILE[n % len(HOSTILE)]
        labels[key] = {"theme": theme, "explanation": "why: " + theme, "model": "m", "prompt_hash": "h", "source": "llm"}
    labels["cluster:filter/k6/0"]["theme"] = "huge" + "\x1b[2J" * 10 + "x" * 10_000_000
    labels["cluster:filter/k6/0"]["explanation"] = "y" * 1_000_000
    return labels


@pytest.fixture
def hostile_index(index_copy: Path) -> Path:
    (index_copy / "labels.json").write_text(json.dumps({"version": 1, "labels": _labels(index_copy)}))
    return index_copy


def _clean(text: str) -> None:
    found = RAW.findall(text.replace("\n", ""))
    assert not found, f"raw characters reached the terminal: {found[:5]!r}"


@pytest.mark.parametrize("args", [
    ["find", "monday", "--top", "40"], ["find", "--tokens", "red,dog", "--top", "40"],
    ["show", "cluster", "k6/0"], ["show", "cluster", "k6/1"], ["show", "cluster", "k3/2"],
    ["show", "neuron", "0:1"], ["show", "neuron", "1:5"], ["info"],
])
def test_hostile_labels_are_printed_clean(hostile_index: Path, args: list[str]):
    out = cli(*args, "--index", hostile_index).ok().stdout
    _clean(out)
    assert len(out) < 40_000, f"{len(out)} characters printed: lengths are not capped"


def test_markup_in_labels_is_printed_literally(hostile_index: Path):
    key = next(k for k, v in _labels(hostile_index).items() if v["theme"] == HOSTILE[5] and k.startswith("cluster"))
    out = cli("show", "cluster", key.split(":", 1)[1], "--index", hostile_index).ok().stdout
    assert "[/] [bold red]markup[/bold red]" in out


@pytest.mark.parametrize("args", [["find", "monday", "--top", "40"], ["find", "monday", "--k", "6", "--top", "40"],
                                  ["show", "cluster", "k6/1"], ["show", "neuron", "0:1"]])
def test_json_output_stays_exact(hostile_index: Path, args: list[str]):
    stored = _labels(hostile_index)
    data = json.loads(cli(*args, "--index", hostile_index, "--json").ok().stdout)
    hits = data.get("results") or [data]
    for hit in hits:
        kind = hit.get("kind", args[1])
        key = f"{kind}:{hit.get('key') or hit['id']}"
        label = hit["label"]["theme"] if isinstance(hit["label"], dict) else hit["label"]
        if key not in stored:  # a node of the cluster tree: nobody labelled it, its offline label is served
            assert "/tree/" in key and hit["label_source"] == "fallback"
            continue
        assert label == stored[key]["theme"]


def test_hostile_query_and_tokens(index_copy: Path):
    query = "monday\x1b]0;pwned\x07\u202e"
    out = cli("find", query, "--index", index_copy).ok().stdout
    _clean(out)
    assert json.loads(cli("find", query, "--index", index_copy, "--json").ok().stdout)["query"] == query
    line = cli("find", "--tokens", "\x1b[2Jzz\u202e,\x00", "--index", index_copy).error_line()
    _clean(line)


def _hostile_corpus(index_copy: Path, tiny_corpus: Path, tmp_path: Path, insert: str) -> None:
    hostile = tmp_path / "hostile.txt"
    lines = tiny_corpus.read_text().splitlines()
    hostile.write_text("\n".join(line.replace(" ", f" {insert} ", 3) for line in lines) + "\n")
    manifest = json.loads((index_copy / "manifest.json").read_text())
    manifest["corpus"]["source"] = str(hostile)
    (index_copy / "manifest.json").write_text(json.dumps(manifest))


def test_hostile_corpus_contexts(index_copy: Path, tiny_corpus: Path, tmp_path: Path):
    """Contexts are re-read from the corpus file: its text is outside text too. Control characters
    alone leave the word pieces (and so the indexed positions) as they were: the contexts are shown."""
    _hostile_corpus(index_copy, tiny_corpus, tmp_path, "\x1b\x07\u202e\x9b")
    out = cli("show", "cluster", "0", "--contexts", "5", "--index", index_copy).ok().stdout
    assert "on its top tokens" in out and "[[" in out
    _clean(out)
    data = json.loads(cli("show", "cluster", "0", "--contexts", "5", "--index", index_copy, "--json").ok().stdout)
    records = [r for group in data["contexts"].values() for r in group]
    assert any(record["left"] and "\x1b" in record["left"] + record["right"] for record in records)


def test_hostile_corpus_that_moved_the_tokens(index_copy: Path, tiny_corpus: Path, tmp_path: Path):
    """A terminal title sequence adds word pieces (``]0;x``): the positions point elsewhere, the
    report says so (cleanly) instead of showing another token's context."""
    _hostile_corpus(index_copy, tiny_corpus, tmp_path, "\x1b]0;x\x07\u202e")
    out = cli("show", "cluster", "0", "--contexts", "5", "--index", index_copy).ok().stdout
    assert "is not the one indexed" in " ".join(out.split())  # the line wraps at the console's width
    _clean(out)


def test_hostile_llm_replies_are_stored_clean_and_capped(llm, tmp_path: Path):
    from neurosearch.labeling.llm import LabelConfig, LabelRequest, label_items

    replies = [json.dumps({"theme": theme, "explanation": "because " + theme}) for theme in HOSTILE]
    replies.append(json.dumps({"theme": "x" * 10_000_000, "explanation": "y" * 1_000_000}))
    llm.respond = lambda seen, n: Reply(content=replies[int(re.search(r"tok(\d)", seen.prompt).group(1))])
    requests = [LabelRequest("cluster", f"filter/k9/{i}", [f"tok{i}", "monday"]) for i in range(len(replies))]
    run = label_items(requests, tmp_path / "labels.json", LabelConfig(base_url=llm.base_url, timeout=20),
                      api_key="sk-battery-key")
    assert run.labelled == len(replies), run.messages
    for label in json.loads((tmp_path / "labels.json").read_text())["labels"].values():
        assert all(for_terminal(text, None) == text for text in (label["theme"], label["explanation"]))  # nothing to strip
        assert len(label["theme"]) <= MAX_THEME and len(label["explanation"]) <= MAX_EXPLANATION


def test_hostile_server_messages_are_printed_clean(llm, index_copy: Path):
    llm.respond = lambda seen, n: Reply(status=400, content="bad \x1b]0;pwned\x07 request \u202e")
    outcome = cli("label", "--index", index_copy, "--base-url", llm.base_url, "--contexts", "0", "--k", "3",
                  "--max-failures", "0")
    assert outcome.code == 1 and "Traceback" not in outcome.output
    _clean(outcome.stderr)
    assert "bad ]0;pwned request" in for_terminal(outcome.stderr)
