"""Verified, cached reads of index files: an explicit cache that a failed hash clears."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurosearch.format.atomic import save_npy_atomic
from neurosearch.format.files import IndexFiles
from neurosearch.format.manifest import IndexError_, Manifest


def _index(tmp_path: Path) -> IndexFiles:
    manifest = Manifest(n_layers=1, neurons_per_layer=2)
    (tmp_path / "a.json").write_text(json.dumps({"x": 1}))
    save_npy_atomic(tmp_path / "b.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    (tmp_path / "c.txt").write_text("one\ntwo")
    for name in ("a.json", "b.npy", "c.txt"):
        manifest.record(tmp_path, name)
    return IndexFiles(tmp_path, manifest)


def test_each_file_is_read_once_until_the_cache_is_cleared(tmp_path):
    files = _index(tmp_path)
    assert not files.was_read("a.json")
    first = files.json("a.json")
    assert first == {"x": 1} and files.json("a.json") is first and files.was_read("a.json")
    assert files.table("b.npy").row(1) == (3, 4, 5) and files.table("b.npy") is files.table("b.npy")
    assert files.npy("b.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert files.lines("c.txt") == ["one", "two"]
    files.clear()
    assert files.json("a.json") is not first and files.json("a.json") == first


def test_a_file_that_fails_its_hash_is_named_and_never_served(tmp_path):
    files = _index(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps({"x": 2}))  # changed after the build recorded it
    with pytest.raises(IndexError_, match="a.json: sha256 does not match"):
        files.json("a.json")
    with pytest.raises(IndexError_, match="a.json"):
        files.json("a.json")


def test_a_hash_failure_in_the_background_clears_the_cache(tmp_path):
    files = _index(tmp_path)
    kept = files.lines("c.txt")  # verified and cached before
    (tmp_path / "a.json").write_text(json.dumps({"x": 2}))
    with pytest.raises(IndexError_, match="a.json"):
        with files.verifying_in_background():
            assert files.json("a.json") == {"x": 2}  # parsed while its hash is still being checked
    assert files.lines("c.txt") is not kept  # everything parsed is forgotten
    with pytest.raises(IndexError_, match="a.json"):  # and the bad file fails again
        with files.verifying_in_background():
            files.json("a.json")
    (tmp_path / "a.json").write_text(json.dumps({"x": 1}))
    with files.verifying_in_background():
        assert files.json("a.json") == {"x": 1}


def test_an_unlisted_file_is_refused(tmp_path):
    files = _index(tmp_path)
    (tmp_path / "d.json").write_text("{}")
    assert not files.has("d.json") and files.has("a.json")
    with pytest.raises(IndexError_, match="lacks d.json"):
        files.json("d.json")
