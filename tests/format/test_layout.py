"""The index layout is written once (format/layout.py) and docs/index-format.md lists exactly it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from neurosearch.format import layout

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "index-format.md"
DEFAULT_INDEX = ROOT / "index" / "default"


def _doc_table() -> dict[str, str]:
    """path pattern -> stage, from the file table of docs/index-format.md."""
    rows: dict[str, str] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| path | stage |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            cells = line.split("|")
            paths, stage = re.findall(r"`([^`]+)`", cells[1]), cells[2].split()[0]
            assert paths, line
            for path in paths:
                assert path not in rows, f"{path} is listed twice"
                rows[path] = stage
    return rows


def test_the_doc_lists_exactly_the_layout_files_with_their_stage():
    listed = dict(layout.files())
    assert len(listed) == len(layout.files()), "a path is in layout.files() twice"
    documented = _doc_table()
    assert sorted(set(listed) - set(documented)) == [], "in layout.files() but not in docs/index-format.md"
    assert sorted(set(documented) - set(listed)) == [], "in docs/index-format.md but not in layout.files()"
    assert {p: s for p, s in documented.items() if listed[p] != s} == {}, "stage differs"


def _pattern(path: str) -> re.Pattern[str]:
    text = re.escape(path).replace(re.escape("<method>"), r"[^/]+")
    text = text.replace(re.escape("<K>"), r"\d+").replace(re.escape("<n>"), r"\d+").replace(re.escape("<name>"), r"[^/]+")
    return re.compile(text + (".*" if path.endswith("/") else ""))


@pytest.mark.skipif(not (DEFAULT_INDEX / "manifest.json").is_file(), reason="no shipped index/default in this checkout")
def test_every_file_of_the_shipped_index_is_a_layout_file():
    manifest = json.loads((DEFAULT_INDEX / "manifest.json").read_text())
    patterns = [_pattern(path) for path, _ in layout.files()]
    unknown = [name for name in manifest["files"] if not any(p.fullmatch(name) for p in patterns)]
    assert unknown == []


def test_layout_paths_compose_as_documented():
    assert layout.clusters_file("filter", 200) == "methods/filter/clusters_k200.json"
    assert layout.postings_file("filter+tfidf", "clusters", "rows") == "search/filter+tfidf/clusters_postings_rows.npy"
    assert layout.hnsw_file("filter", "neurons") == "search/filter/neurons.hnsw"
    assert layout.checkpoint_dir(3) == "checkpoint/stats-3"
    assert layout.checkpoint_shards("stats-12") == 12
    assert layout.checkpoint_shards("stats-x") is None and layout.checkpoint_shards(".stats-3.tmp") is None
