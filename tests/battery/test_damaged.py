"""Damaged files of every kind: the damaged file is named in one line, and nothing stored is replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from battery.battery_kit import cli

from neurosearch.format.atomic import sha256_file


def _edit_manifest(index: Path, change: Callable[[Any], Any]) -> None:
    path = index / "manifest.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _set(*keys: str, value: Any) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return data
    return change


MANIFESTS = {
    "a list": lambda data: [data],
    "a number": lambda data: 7,
    "configs a list": _set("configs", value=[]),
    "stages a list": _set("stages", value=[]),
    "a stage a list": _set("stages", "search", value=[]),
    "neurons_per_layer 0": _set("neurons_per_layer", value=0),
    "n_layers a string": _set("n_layers", value="x"),
    "ks strings": _set("configs", "clusters", "ks", value=["abc"]),
    "ks empty": _set("configs", "clusters", "ks", value=[]),
    "methods empty": _set("configs", "profiles", "methods", value=[]),
    "search method unknown": _set("configs", "profiles", "search_method", value="nope"),
    "files a list": _set("files", value=[]),
    "a sha256 a number": lambda data: {**data, "files": {k: 1 for k in data["files"]}},
    "model a string": _set("model", value="x"),
    "no format version": lambda data: {k: v for k, v in data.items() if k != "format_version"},
    "site a number": _set("site", value=3),
}


@pytest.mark.parametrize("command", [["info"], ["find", "monday"], ["show", "cluster", "0"]])
@pytest.mark.parametrize("damage", list(MANIFESTS))
def test_damaged_manifest(index_copy: Path, damage: str, command: list[str]):
    _edit_manifest(index_copy, MANIFESTS[damage])
    line = cli(*command, "--index", index_copy).error_line()
    assert "manifest.json" in line or (damage == "no format version" and "format version None" in line), line


@pytest.mark.parametrize("content", [b"", b"\x00\xff" * 300, b"{not json"])
def test_unparseable_manifest(index_copy: Path, content: bytes):
    (index_copy / "manifest.json").write_bytes(content)
    assert "manifest.json" in cli("info", "--index", index_copy).error_line()


def test_markup_and_escapes_in_manifest_fields_are_printed_literally(index_copy: Path):
    _edit_manifest(index_copy, _set("corpus", "source", value="[/] [bold red]x\x1b]0;pwned\x07 corpus"))
    out = cli("info", "--index", index_copy).ok().stdout
    assert "[/] [bold red]x" in out and "\x1b" not in out and "\x07" not in out
    assert json.loads(cli("info", "--index", index_copy, "--json").ok().stdout)["corpus"]["source"].startswith("[/]")


def _replace(index: Path, relative: str, content: bytes, *, rehash: bool) -> Path:
    """Damage a file; with ``rehash`` also update its sha256, as if the manifest had been edited to match."""
    path = index / relative
    path.write_bytes(content)
    if rehash:
        _edit_manifest(index, lambda data: {**data, "files": {**data["files"], relative: sha256_file(path)}})
    return path


@pytest.mark.parametrize("rehash", [False, True])
@pytest.mark.parametrize("relative, content, command", [
    ("search/filter/neurons_postings_weights.npy", b"", ["find", "monday"]),
    ("search/filter/neurons_postings_weights.npy", b"\x93NUMPY garbage", ["find", "monday"]),
    ("neurons/mean.npy", b"", ["show", "neuron", "0:1"]),
    ("neurons/top_refs.npy", b"\x00" * 64, ["show", "cluster", "0"]),
    ("search/filter/neurons.hnsw", b"\x00garbage" * 50, ["find", "monday", "--ann"]),
    ("search/filter/clusters.hnsw", b"", ["find", "monday", "--ann"]),
    ("methods/filter/clusters_k6.json", b"{not json", ["show", "cluster", "0"]),
    ("tokens.json", b"\xff\xfe\x00", ["find", "monday"]),
    ("search/filter/fallback_labels.txt", b"\xff\xfe\x00\x81", ["find", "monday"]),
    ("tokenizer.json", b"{not a tokenizer", ["show", "cluster", "0"]),
    ("search/wordpiece.json", b"[]", ["find", "european capitals"]),  # read by the slow path only
])
def test_damaged_index_file(index_copy: Path, relative: str, content: bytes, command: list[str], rehash: bool):
    path = _replace(index_copy, relative, content, rehash=rehash)
    assert str(path) in cli(*command, "--index", index_copy).error_line()


STORES = {"invalid": b"{not json", "a list": b"[]", "binary": bytes(range(256)), "results a list": b'{"results": []}',
          "a result a string": b'{"version": 1, "results": {"cluster:filter/k6/0": "x"}}'}


@pytest.mark.parametrize("damage", list(STORES))
def test_damaged_ablations_store_is_named_and_kept(index_copy: Path, damage: str):
    store = index_copy / "ablations.json"
    store.write_bytes(STORES[damage])
    assert "ablations.json" in cli("show", "cluster", "0", "--index", index_copy).error_line()
    # ablate refuses before the work (it would otherwise be lost) and leaves the store as it is
    line = cli("ablate", "--neurons", "0:1", "--sentences", "4", "--seeds", "2", "--index", index_copy).error_line()
    assert "ablations.json" in line
    assert store.read_bytes() == STORES[damage]


@pytest.mark.parametrize("damage", ["invalid", "a list", "binary", "a result a string"])
def test_damaged_label_store_is_named_and_kept(index_copy: Path, damage: str):
    store = index_copy / "labels.json"
    store.write_bytes(STORES[damage])
    assert "labels.json" in cli("find", "monday", "--index", index_copy).error_line()
    assert "labels.json" in cli("label", "--index", index_copy, "--base-url", "http://127.0.0.1:9").error_line()
    assert store.read_bytes() == STORES[damage]


def test_stored_ablation_with_wrong_types_is_shown_not_crashed(index_copy: Path):
    from neurosearch.index import Index

    neurons = Index.load(index_copy).cluster("filter/k6/0").neurons  # about this cluster, so it is shown
    result = {"target": {"kind": "cluster", "id": "filter/k6/0", "neurons": neurons}, "ablation": "\x1b[2Jmean",
              "loss": "high", "baselines": {"random": {"mean_pct": None, "p": "x"}, "odd": 3}}
    (index_copy / "ablations.json").write_text(json.dumps({"version": 1, "results": {"cluster:filter/k6/0": result}}))
    out = cli("show", "cluster", "k6/0", "--index", index_copy).ok().stdout
    assert "\x1b" not in out and "ablation (" in out


def test_damaged_head_record_is_named_and_kept(index_copy: Path):
    (index_copy / "head").mkdir()
    record = index_copy / "head" / "head.json"
    record.write_bytes(b"\x00garbage")
    assert "head.json" in cli("fit-head", "--index", index_copy, "--epochs", "0.1").error_line()
    assert record.read_bytes() == b"\x00garbage"


def test_torn_and_foreign_result_lines_are_kept_and_never_glued(index_copy: Path):
    """A killed evaluate leaves a torn last line; the next run appends on a new line and loses nothing."""
    results = index_copy / "evaluation" / "results.jsonl"
    results.parent.mkdir()
    torn = b'\x00\xffbinary\n{"target": {"kind": "cluster", "id": "filter/k3/0", "neu'
    results.write_bytes(torn)
    cli("evaluate", "--index", index_copy, "--methods", "filter", "--k", "3", "--sentences", "4", "--seeds", "2").ok()
    data = results.read_bytes()
    assert data.startswith(torn + b"\n"), "the torn line was changed or glued to the next record"
    lines = data.split(b"\n")[2:]
    assert len([line for line in lines if line]) == 3 and all(json.loads(line) for line in lines if line)
