"""The slow path's cache: a phrase's expansion is kept between runs, keyed by the index's files and
the code that computes it, and a cache that cannot be read or written never fails a query."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from neurosearch.index import Index
from neurosearch.model.phrases import PhraseEmbedder


class Counting(PhraseEmbedder):
    """A PhraseEmbedder whose model is a fixed answer (no torch), counting what it computes."""

    def __init__(self, cache_dir=None):
        super().__init__(cache_dir)
        self.computed = 0

    def embed(self, vocabulary, text, head):
        self.computed += 1
        return [(0, 0.9), (1, 0.5)]


PHRASE = "zzqx wwvy"  # no stored expansion: the slow path


def test_a_phrase_is_computed_once_and_then_kept(tiny_index: Path, tmp_path: Path):
    first = Counting(tmp_path / "cache")
    result = Index.load(tiny_index, embedder=first).find(PHRASE, all_hits=True)
    assert first.computed == 1 and re.search(r"slow path, \d+\.\d s\)", result.notes[0])  # computed, timed
    again = Counting(tmp_path / "cache")  # a new process, the same cache
    kept = Index.load(tiny_index, embedder=again).find(PHRASE, all_hits=True)
    assert again.computed == 0 and "kept from an earlier run" in kept.notes[0]
    assert [(h.id, h.score) for h in kept.results] == [(h.id, h.score) for h in result.results]
    assert kept.query.token_index == result.query.token_index and kept.query.weights == result.query.weights
    (cache,) = (tmp_path / "cache").glob("phrases-*.json")
    assert list(json.loads(cache.read_text())) == [f"\t{PHRASE}"]
    without = Counting()  # no cache_dir: nothing kept
    Index.load(tiny_index, embedder=without).find(PHRASE, all_hits=True)
    Index.load(tiny_index, embedder=without).find(PHRASE, all_hits=True)
    assert without.computed == 2


def test_the_cache_is_keyed_by_the_index_files(tmp_path: Path):
    embedder = PhraseEmbedder(tmp_path)
    one = SimpleNamespace(files=SimpleNamespace(manifest=SimpleNamespace(files={"a.npy": "1" * 64})))
    other = SimpleNamespace(files=SimpleNamespace(manifest=SimpleNamespace(files={"a.npy": "2" * 64})))
    assert embedder.cache_file(one) != embedder.cache_file(other)
    assert embedder.cache_file(one) == PhraseEmbedder(tmp_path).cache_file(one)


def test_a_damaged_or_unwritable_cache_never_fails_a_query(tiny_index: Path, tmp_path: Path):
    embedder = Counting(tmp_path / "cache")
    index = Index.load(tiny_index, embedder=embedder)
    path = embedder.cache_file(index.vocabulary)
    path.parent.mkdir(parents=True)
    for damaged in ("{not json", json.dumps({f"\t{PHRASE}": [[10**9, 0.5]]}), json.dumps([1, 2])):
        path.write_text(damaged)
        before = embedder.computed
        Index.load(tiny_index, embedder=embedder).find(PHRASE, all_hits=True)
        assert embedder.computed == before + 1  # not trusted: computed again, and the file replaced
        assert json.loads(path.read_text())[f"\t{PHRASE}"] == [[0, 0.9], [1, 0.5]]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    stuck = Counting(blocked / "cache")
    assert Index.load(tiny_index, embedder=stuck).find(PHRASE, all_hits=True).results
    assert Index.load(tiny_index, embedder=stuck).find(PHRASE, all_hits=True).results and stuck.computed == 2


def test_files_of_older_code_for_the_same_index_are_removed(tiny_index: Path, tmp_path: Path):
    embedder = Counting(tmp_path / "cache")
    index = Index.load(tiny_index, embedder=embedder)
    path = embedder.cache_file(index.vocabulary)
    path.parent.mkdir(parents=True)
    identity = path.name.rsplit("-", 1)[0]
    old = path.with_name(f"{identity}-0000000000000000.json")
    other_index = path.with_name("phrases-ffffffffffffffff-0000000000000000.json")
    for stale in (old, other_index):
        stale.write_text("{}")
    index.find(PHRASE, all_hits=True)
    assert path.exists() and not old.exists() and other_index.exists()  # another index's file stays
