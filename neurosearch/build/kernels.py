"""One fused pass over a layer's activations for the statistics stage (numba, CPU).

The torch path of :class:`~neurosearch.build.stats.StatsAccumulator` reads a batch's activations
four times (a float64 copy, ``index_put_`` into the per-token sums, the squares, the top-k screen);
this kernel reads them once. Columns (neurons) are split between threads, so no two threads write
the same memory: each thread walks every row and, for its columns, adds the value to the token's
float64 sum (in row order, exactly as ``index_put_`` does), adds its square to a float64 running
sum, and keeps the maximum of every block of rows for the top-k screen. Rows whose token id is
negative (special tokens, padding) are skipped.

Without numba (or with ``NEUROSEARCH_NO_NUMBA=1``) the accumulator uses the torch path; the tests
check that both give the same statistics.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

import numpy as np


try:  # numba is a dependency; the torch path remains for platforms without a wheel
    import numba
    from numba import prange
except ImportError:  # pragma: no cover
    numba = None


def _accumulate(x: Any, rows: Any, sums: Any, sumsq: Any, block_max: Any, block: int, threads: int) -> None:
    n, width = x.shape
    chunk = ((width + threads - 1) // threads + 15) // 16 * 16
    for thread in prange(threads):
        start = thread * chunk
        end = min(width, start + chunk)
        if start >= end:
            continue
        squares = np.zeros(end - start)
        for r in range(n):
            row = rows[r]
            if row < 0:
                continue
            values = x[r, start:end]
            token_sums = sums[row, start:end]
            maxima = block_max[r // block, start:end]
            for j in range(end - start):
                value = np.float64(values[j])
                token_sums[j] += value
                squares[j] += value * value
            for j in range(end - start):
                maxima[j] = max(maxima[j], values[j])
        sumsq[start:end] += squares


@lru_cache(maxsize=1)
def fused_accumulate() -> Callable[..., None] | None:
    """The compiled kernel ``(x, rows, sums, sumsq, block_max, block)``, or None without numba.

    Compiled on first use and cached on disk by numba (a second or so the first time).
    """
    if numba is None or os.environ.get("NEUROSEARCH_NO_NUMBA"):
        return None
    compiled = numba.njit(parallel=True, boundscheck=False, cache=True)(_accumulate)

    def kernel(x: Any, rows: Any, sums: Any, sumsq: Any, block_max: Any, block: int) -> None:
        compiled(x, rows, sums, sumsq, block_max, block, numba.get_num_threads())

    return kernel


def _pairs(x: Any, where: Any, rows: Any, offsets: Any, columns: Any, pairs: Any, sums: Any, maxes: Any,
           refs: Any, docs: Any, pos: Any, ids: Any) -> None:
    for i in range(where.shape[0]):
        p = where[i]
        row = rows[i]
        for e in range(offsets[row], offsets[row + 1]):
            g = pairs[e]
            value = x[p, columns[e]]
            sums[g] += np.float64(value)
            if value > maxes[g]:  # strict: the first occurrence of a maximum is kept
                maxes[g] = value
                refs[g, 0] = docs[p]
                refs[g, 1] = pos[p]
                refs[g, 2] = ids[p]


@lru_cache(maxsize=1)
def fused_pairs() -> Callable[..., None] | None:
    """The contexts stage's kernel (``contexts.py``): for every kept-token position of a batch and
    every (neuron, token) pair of its token in this layer, add the activation to the pair's float64
    sum and keep its maximum with the reference (document, position, token id). One sequential pass
    (pairs of one token share memory); None without numba."""
    if numba is None or os.environ.get("NEUROSEARCH_NO_NUMBA"):
        return None
    return numba.njit(boundscheck=False, cache=True)(_pairs)
