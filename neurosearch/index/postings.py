"""Inverted lists of scoring weights: exact cosine scores with the standard library.

Each neuron or cluster is represented by unit weights ``s`` over a few of its top tokens (see
``search.py``: equal weights on a neuron's first 10, z-score peaks for clusters); its score for a
query with kept-token weights ``q`` is ``sum_t q_t s[t] / |q|``. Stored token-major -- for every
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

    def scores(self, query: dict[int, float]) -> dict[int, float]:
        """Row -> cosine with the query (kept token -> weight), for rows with a positive score."""
        norm = math.sqrt(sum(w * w for w in query.values()))
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


def ranked(scores: dict[int, float], rows: Iterable[int], limit: int | None = None) -> list[tuple[int, float]]:
    """(row, score) of ``rows``, best first, ties (and the rows scoring 0) in row order."""
    import heapq

    rows = list(rows)
    scored = [(row, scores[row]) for row in rows if row in scores]
    key = lambda item: (-item[1], item[0])  # noqa: E731
    best = heapq.nsmallest(limit, scored, key=key) if limit is not None else sorted(scored, key=key)
    if limit is not None and len(best) >= limit:
        return best
    zero = [(row, 0.0) for row in sorted(rows) if row not in scores]
    return (best + zero)[:limit]
