"""Ranking an index's neurons and clusters for a query: exact scores from inverted lists, HNSW candidates.

A row's score is the expected precision of its first 10 top tokens: the query's weights of those
tokens (each the probability that the token belongs to the concept) summed over 10; a tie is broken
by the same over its first 30 (``layout.DEEP_TOKENS``), then by row. Every row is scored exactly
from the postings (``postings.py``, standard library), and only the rows a query scores are ranked
(``Postings.top``); when asked (``--ann``, or from ``SearchConfig.hnsw_min_rows`` rows on) the HNSW
graph of the search method proposes candidates by the query's dense vector and the exact score
reranks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.config import SearchConfig
from neurosearch.format import layout
from neurosearch.format.files import IndexFiles
from neurosearch.format.manifest import IndexError_
from neurosearch.ids import row_key_prefix
from neurosearch.index.postings import Postings, ranked
from neurosearch.index.query import ExpandedQuery
from neurosearch.index.vocabulary import Vocabulary

if TYPE_CHECKING:
    import numpy as np


def _kind(kind: str) -> str:
    """``neurons`` or ``clusters`` (anything but ``neurons`` scores clusters)."""
    return "neurons" if kind == "neurons" else "clusters"


class Scoring:
    """The scored rows of every method of one index: neurons (flat index) and clusters (row keys)."""

    def __init__(self, files: IndexFiles, vocabulary: Vocabulary, config: SearchConfig):
        self.files = files
        self.manifest = files.manifest
        self.vocabulary = vocabulary
        self.config = config
        self._postings: dict[tuple[str, str], Postings] = {}
        self._rows: dict[str, dict[str, int]] = {}
        self._hnsw: dict[str, Any] = {}

    def cluster_keys(self, method: str) -> list[str]:
        """``kK/ID`` of every cluster of ``method``: the rows that ``rank("clusters", ...)`` returns."""
        return list(self.files.json(layout.cluster_keys_file(method))["keys"])

    def cluster_key(self, method: str, row: int) -> str:
        """The ``kK/ID`` of one scored cluster row."""
        return self.files.json(layout.cluster_keys_file(method))["keys"][row]

    def cluster_row(self, method: str, row_key: str) -> int:
        """The row of the cluster keyed ``kK/ID`` among ``method``'s scored clusters."""
        if method not in self._rows:
            self._rows[method] = {key: row for row, key in enumerate(self.cluster_keys(method))}
        return self._rows[method][row_key]

    def postings(self, kind: str, method: str | None = None, deep: bool = False) -> Postings:
        """The inverted lists that score ``kind`` (neurons or clusters) of ``method`` by their first
        10 top tokens (``deep``: their first 30, the tie-break)."""
        method = method or self.manifest.search_method
        name = _kind(kind)
        if (method, name, deep) not in self._postings:
            n_rows = self.manifest.n_neurons if name == "neurons" else len(self.cluster_keys(method))
            parts = [self.files.table(layout.postings_file(method, name, part, deep)) for part in layout.POSTINGS_PARTS]
            self._postings[(method, name, deep)] = Postings(*parts, n_rows=n_rows)
        return self._postings[(method, name, deep)]

    @property
    def score_tokens(self) -> int:
        """How many of a row's first top tokens score it (``ProfileConfig.neuron_score_tokens``)."""
        return int(self.manifest.configs["profiles"].get("neuron_score_tokens") or 10)

    def has_tree(self, method: str) -> bool:
        """Whether ``method``'s cluster tree has its nodes among the scored clusters (the search method's has)."""
        return self.files.has(layout.tree_file(method, "children"))

    def rank(
        self, kind: str, expanded: ExpandedQuery, *, method: str | None = None, exact: bool | None = None,
        k: int | None = None, limit: int | None = None,
    ) -> list[tuple[int, float]]:
        """(row, score) of every neuron or cluster, best first (ties: see the module's docstring).

        ``exact=True`` scores every row; ``False`` reranks HNSW candidates; ``None`` (default) is
        exact unless ``SearchConfig.hnsw_min_rows`` is set and reached (exact is faster end to end
        at every size measured: docs/results/benchmarks.md). Rows index the neurons (flat index) or ``cluster_keys(method)``.
        Methods other than the index's search method have no HNSW files and are always exact.
        For clusters, ``k`` keeps one cut's (0: the tree's nodes). ``limit`` keeps only that many of
        the best rows.
        """
        method = method or self.manifest.search_method
        postings = self.postings(kind, method)
        if exact is None:
            exact = self.config.hnsw_min_rows is None or postings.n_rows < self.config.hnsw_min_rows
        query, scale = expanded.as_dict(), 1.0 / self.score_tokens
        deep = self.postings(kind, method, deep=True).scores(query, 1.0 / layout.DEEP_TOKENS)
        if (exact or method != self.manifest.search_method) and limit is not None and not (kind == "clusters" and k is not None):
            return postings.top(query, limit, scale, deep)  # ranks only the scored rows
        scores = postings.scores(query, scale)
        rows: Any = range(postings.n_rows)
        if not exact and method == self.manifest.search_method:
            rows = self._hnsw_candidates(kind, method, self.vocabulary.dense_vector(expanded), postings.n_rows)
        if kind == "clusters" and k is not None:
            prefix = row_key_prefix(k)
            keys = self.cluster_keys(method)
            rows = [row for row in rows if keys[row].startswith(prefix)]
        return ranked(scores, rows, limit, deep)

    def _hnsw_candidates(self, kind: str, method: str, dense: np.ndarray, total: int) -> list[int]:
        name = _kind(kind)
        if name not in self._hnsw:
            path = self.files.verified(layout.hnsw_file(method, name))  # hnswlib parses it in C
            try:
                self._hnsw[name] = load_hnsw(path, dense.shape[0], self.config.hnsw_ef)
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise IndexError_(f"corrupt index file {path}: {exc}") from None
        count = min(self.config.candidates, total)
        labels, _ = self._hnsw[name].knn_query(dense[None, :], k=count)
        return [int(row) for row in labels[0]]


def load_hnsw(path: Path, dim: int, ef: int) -> Any:
    """An hnswlib cosine index written by ``build.search.build_hnsw``, searching ``ef`` candidates."""
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(str(path))
    index.set_ef(ef)
    return index
