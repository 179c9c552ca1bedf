"""Result stores: merge under a lock, torn-line-safe logs, unreadable files refused, state location."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from neurosearch.format.state import IndexState, index_identity, state_root
from neurosearch.format.store import StoreError, append_jsonl, read_json, read_jsonl, update_json


def _add_keys(path: str, prefix: str, count: int) -> None:
    for i in range(count):
        update_json(Path(path), lambda data, i=i: {**data, f"{prefix}{i}": i}, default={})


def test_concurrent_updates_keep_every_key(tmp_path: Path):
    path = tmp_path / "store.json"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_keys, args=(str(path), p, 40)) for p in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    data = json.loads(path.read_text())
    assert len(data) == 80


def test_unreadable_store_is_refused_and_left_alone(tmp_path: Path):
    path = tmp_path / "store.json"
    path.write_bytes(b"\x00\x01 not json")
    with pytest.raises(StoreError, match="store.json"):
        update_json(path, lambda data: {**data, "x": 1}, default={})
    assert path.read_bytes() == b"\x00\x01 not json"

    def must_be_object(data):
        if not isinstance(data, dict):
            raise ValueError("expected an object")

    path.write_text("[1, 2]")
    with pytest.raises(StoreError, match="expected an object"):
        read_json(path, check=must_be_object)
    assert read_json(tmp_path / "absent.json", default={"v": 1}) == {"v": 1}


def test_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path: Path):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"id": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"id": 2, "trunc')  # a writer killed mid-line
    append_jsonl(path, {"id": 3})
    records, skipped = read_jsonl(path)
    assert records == [{"id": 1}, {"id": 3}] and skipped == 1
    assert read_jsonl(tmp_path / "none.jsonl") == ([], 0)


def test_state_goes_beside_a_writable_index_and_elsewhere_for_a_read_only_one(tmp_path: Path, monkeypatch):
    files = {"a.npy": "00", "b.json": "11"}
    own = IndexState.of(tmp_path, files)
    assert own.writes_into_index and own.write_path("labels.json") == tmp_path / "labels.json"
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))
    shipped = IndexState.of(tmp_path, files, read_only=True)
    assert shipped.state_dir == tmp_path / "state" / f"{tmp_path.name}-{index_identity(files)}"
    assert state_root("/x") == Path("/x")
    (tmp_path / "labels.json").write_text("{}")
    shipped.write_path("labels.json").parent.mkdir(parents=True)
    shipped.write_path("labels.json").write_text("{}")
    assert shipped.read_paths("labels.json") == [tmp_path / "labels.json", shipped.write_path("labels.json")]
    assert index_identity(files) != index_identity({**files, "a.npy": "01"})


def test_check_writable_probes_without_leaving_anything(tmp_path: Path):
    from neurosearch.format.store import check_writable

    check_writable(tmp_path / "new" / "folder")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        check_writable(tmp_path / "file" / "below")
    with pytest.raises(StoreError, match="cannot write"):
        check_writable(Path("/proc/neurosearch-probe"))
