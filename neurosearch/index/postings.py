"""Inverted lists of scoring weights: exact scores with the standard library.

Each neuron or cluster is represented by weights ``s`` over a few of its top tokens (the search
stage gives each of its first 10 top tokens weight 1, ``search_stage.py``); its score for a query
with kept-token weights ``q`` is ``scale * sum_t q_t s[t]`` -- with membership probabilities as
``q`` and scale 1/10, the expected share of those tokens in the concept -- or
``sum_t q_t s[t] / |q|`` (the cosine, for unit ``s``). Stored token-major -- for every
kept token, the rows that weigh it and their weights -- a query touches only the lists of its own
tokens (a few thousand entries), so scoring needs neither a scan of every row nor numpy.

Files (``layout.postings_file``: ``search/<method>/<kind>_postings_*.npy``, kind ``neurons`` or ``clusters``):
``offsets`` int64 [T+1] (token t's entries are ``offsets[t]:offsets[t+1]``), ``rows`` uint16 or
int32 [P] and ``weights`` float16 [P]; entries of a token are in row order.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Sequence

from neurosearch.format.layout import POSTINGS_PARTS

if TYPE_CHECKING:
    import numpy as np

PARTS = POSTINGS_PARTS  # offsets, rows, weights
VECTOR_ROWS = 200_000
"""From this many rows on, :meth:`Postings.top` sums the lists with numpy."""


def build_postings(top_index: "np.ndarray", weights: "np.ndarray", n_tokens: int) -> dict[str, "np.ndarray"]:
    """Token-major lists of ``weights[r, m]`` at token ``top_index[r, m]`` (zero weights left out)."""
    import numpy as np

    rows = np.repeat(np.arange(top_index.shape[0], dtype=np.int64), top_index.shape[1])
    tokens = top_index.reshape(-1).astype(np.int64)
    values = weights.reshape(-1).astype(np.float16)
    keep = values > 0
    rows, tokens, values = rows[keep], tokens[keep], values[keep]
    order = np.lexsort((rows, tokens))  # by token, then row
    offsets = np.zeros(n_tokens + 1, dtype=np.int64)
    np.cumsum(np.bincount(tokens, minlength=n_tokens), out=offsets[1:])
    row_type = np.uint16 if top_index.shape[0] <= np.iinfo(np.uint16).max + 1 else np.int32
    return {"offsets": offsets, "rows": rows[order].astype(row_type), "weights": values[order]}


class Postings:
    """Scores every row against a query from the token-major lists (``offsets``, ``rows``, ``weights``):
    ``NpyFile`` s or lists, anything whose slices hold Python numbers (numpy's float16 scalars would
    accumulate in float16)."""

    def __init__(self, offsets: Sequence, rows: Sequence, weights: Sequence, n_rows: int):
        self.offsets = offsets
        self.rows = rows
        self.weights = weights
        self.n_rows = n_rows

    def top(self, query: dict[int, float], limit: int, scale: float | None = None,
            secondary: dict[int, float] | None = None) -> list[tuple[int, float]]:
        """The ``limit`` best rows (row, score: see :meth:`scores`), ties by ``secondary`` (higher
        first), then ties and zero-score filler in row order.

        Pure Python below ``VECTOR_ROWS`` rows (``find`` on the shipped index imports no numpy);
        above it the touched lists are summed with numpy (``bincount``), where a query touches enough
        entries that numpy's import pays for itself (the figures: docs/decisions.md)."""
        if self.n_rows >= VECTOR_ROWS and all(hasattr(p, "path") for p in (self.offsets, self.rows, self.weights)):
            return self._top_numpy(query, limit, scale, secondary)
        return ranked(self.scores(query, scale), range(self.n_rows), limit, secondary)

    def _top_numpy(self, query: dict[int, float], limit: int, scale: float | None,
                   secondary: dict[int, float] | None) -> list[tuple[int, float]]:
        import numpy as np

        arrays = self.__dict__.get("_arrays")
        if arrays is None:
            arrays = self.__dict__["_arrays"] = [np.load(p.path, mmap_mode="r") for p in (self.offsets, self.rows, self.weights)]
        offsets, rows, weights = arrays
        norm = _norm(query, scale)
        tokens = [t for t, w in query.items() if w > 0]
        if norm == 0 or not tokens:
            return ranked({}, range(self.n_rows), limit)
        starts, stops = offsets[tokens], offsets[np.asarray(tokens) + 1]
        picked = np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), stops.tolist())])
        counts = (stops - starts).astype(np.int64)
        query_weights = np.repeat(np.asarray([query[t] for t in tokens], dtype=np.float64), counts)
        totals = np.bincount(rows[picked], weights=weights[picked].astype(np.float64) * query_weights,
                             minlength=self.n_rows)
        scored = np.flatnonzero(totals > 0)
        if len(scored) > limit:
            cut = np.partition(totals[scored], len(scored) - limit)[len(scored) - limit]
            scored = scored[totals[scored] >= cut]  # ties at the cut stay; the sort below settles them
        order = np.lexsort((scored, -totals[scored]))  # ties at the cut: ranked() breaks them
        return ranked({int(r): float(totals[r]) / norm for r in scored[order]}, range(self.n_rows), limit, secondary)

    def scores(self, query: dict[int, float], scale: float | None = None) -> dict[int, float]:
        """Row -> score for the query (kept token -> weight), for rows with a positive score: the
        cosine with it (``scale`` None), or the weighted sum times ``scale``."""
        norm = _norm(query, scale)
        if norm == 0:
            return {}
        totals: dict[int, float] = {}
        get = totals.get
        for token, weight in query.items():
            if weight <= 0:
                continue
            start, stop = self.offsets[token : token + 2]
            for row, value in zip(self.rows[start:stop], self.weights[start:stop]):
                totals[row] = get(row, 0.0) + value * weight
        return {int(row): float(total) / norm for row, total in totals.items() if total > 0}


def _norm(query: dict[int, float], scale: float | None) -> float:
    """What the weighted sums are divided by: the query's length (cosine), or 1 / ``scale``."""
    return math.sqrt(sum(w * w for w in query.values())) if scale is None else 1.0 / scale


def ranked(scores: dict[int, float], rows: Iterable[int], limit: int | None = None,
           secondary: dict[int, float] | None = None) -> list[tuple[int, float]]:
    """(row, score) of ``rows``, best first; ties by ``secondary`` (higher first), then (and the rows
    scoring 0) in row order.

    When ``rows`` is a ``range`` (every row) and ``limit`` is set, only the scored rows are ranked
    and the zero-score filler is read off the range from its start: the cost follows the query's
    postings, not the number of rows (1M rows: ``benchmarks/find_scale.py``).
    """
    import heapq

    second = secondary or {}
    key = lambda item: (-item[1], -second.get(item[0], 0.0), item[0])  # noqa: E731
    if isinstance(rows, range) and rows.step == 1 and limit is not None:
        scored = [(row, score) for row, score in scores.items() if rows.start <= row < rows.stop]
        best = heapq.nsmallest(limit, scored, key=key)
        for row in rows:
            if len(best) >= limit:
                break
            if row not in scores:
                best.append((row, 0.0))
        return best
    rows = list(rows)
    scored = [(row, scores[row]) for row in rows if row in scores]
    best = heapq.nsmallest(limit, scored, key=key) if limit is not None else sorted(scored, key=key)
    if limit is not None and len(best) >= limit:
        return best
    zero = [(row, 0.0) for row in sorted(rows) if row not in scores]
    return (best + zero)[:limit]
