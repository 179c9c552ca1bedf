"""One fused pass over a layer's activations for the statistics stage (numba, CPU).

The kernel reads a batch's activations once, in place: float32, or bfloat16 passed as its int16
bit pattern (``x.view(torch.int16)``) and widened to float32 by a 16-bit shift that the loop
vectorises -- no float32 copy of the layer. Columns (neurons) are split between threads, so no two
threads write the same memory. Each thread walks every row and, for its columns,

- adds the value to the token's float64 sum, in row order (exactly what ``index_put_`` does, so the
  sums are bit-identical to the torch path's),
- adds its square to a thread-local float64 sum, added to the neuron's total once per call,
- keeps the top-k inline: a value that beats the column's threshold (its current k-th best) is
  inserted into the column's sorted list; the comparison is a strict ``>`` and an insertion shifts
  only strictly smaller entries, so an older occurrence wins a tie, as the torch path's stable
  sort does. After the first rows of a run almost no value beats the threshold, so the top-k costs
  one compare per value.

Rows whose table row is negative (special tokens, padding, tokens outside a compact table) are
skipped. Without numba (or with ``NEUROSEARCH_NO_NUMBA=1``) the accumulator uses the torch path;
the tests check that both give the same statistics.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

import numpy as np

try:  # numba is a dependency; the torch path remains for platforms without a wheel
    import numba
    import numba.extending
    from numba import prange
except ImportError:  # pragma: no cover
    numba = None


def _insert(top_values: Any, top_refs: Any, column: int, value: float, doc: int, pos: int, token: int) -> None:
    """Insert ``value`` into ``column``'s descending list, after every entry >= it (older wins)."""
    k = top_values.shape[1]
    p = k - 1
    while p > 0 and top_values[column, p - 1] < value:
        top_values[column, p] = top_values[column, p - 1]
        top_refs[column, p, 0] = top_refs[column, p - 1, 0]
        top_refs[column, p, 1] = top_refs[column, p - 1, 1]
        top_refs[column, p, 2] = top_refs[column, p - 1, 2]
        p -= 1
    top_values[column, p] = value
    top_refs[column, p, 0] = doc
    top_refs[column, p, 1] = pos
    top_refs[column, p, 2] = token


def _load_row(x, r, start, end, scratch):  # type: ignore[no-untyped-def]
    """Row ``r``'s columns ``start:end`` of ``x`` as float32 (resolved per dtype by numba)."""
    raise NotImplementedError  # only called from compiled code


def _load_row_typed(x, r, start, end, scratch):  # type: ignore[no-untyped-def]  # numba: names only
    if x.dtype == numba.types.int16:  # bfloat16 bits: the upper half of the float32 pattern

        def load_bfloat16(x, r, start, end, scratch):  # type: ignore[no-untyped-def]
            source = x[r, start:end]
            for j in range(end - start):
                scratch[j] = np.uint32(np.uint16(source[j])) << np.uint32(16)
            return scratch.view(np.float32)

        return load_bfloat16

    def load_float32(x, r, start, end, scratch):  # type: ignore[no-untyped-def]
        return x[r, start:end]

    return load_float32


def _kernel(x: Any, rows: Any, docs: Any, pos: Any, ids: Any, sums: Any, sumsq: Any,
            top_values: Any, top_refs: Any, threads: int) -> None:
    n, width = x.shape
    k = top_values.shape[1]
    chunk = ((width + threads - 1) // threads + 15) // 16 * 16
    for thread in prange(threads):
        start = thread * chunk
        end = min(width, start + chunk)
        if start >= end:
            continue
        m = end - start
        squares = np.zeros(m)
        threshold = np.empty(m, dtype=np.float32)
        for j in range(m):
            threshold[j] = top_values[start + j, k - 1]
        scratch = np.empty(m, dtype=np.uint32)
        for r in range(n):
            row = rows[r]
            if row < 0:
                continue
            values = _load_row(x, r, start, end, scratch)
            token_sums = sums[row, start:end]
            for j in range(m):
                value = np.float64(values[j])
                token_sums[j] += value
                squares[j] += value * value
            for j in range(m):
                if values[j] > threshold[j]:
                    _insert_jit(top_values, top_refs, start + j, values[j], docs[r], pos[r], ids[r])
                    threshold[j] = top_values[start + j, k - 1]
        for j in range(m):
            sumsq[start + j] += squares[j]


if numba is not None:
    numba.extending.overload(_load_row, inline="always")(_load_row_typed)
    _insert_jit = numba.njit(boundscheck=False, cache=True)(_insert)
    _compiled = numba.njit(parallel=True, boundscheck=False, cache=True)(_kernel)


@lru_cache(maxsize=1)
def fused_accumulate() -> Callable[..., None] | None:
    """``kernel(x, rows, docs, pos, ids, sums, sumsq, top_values, top_refs)`` or None without numba.

    ``x`` is [n, width] float32, or int16 holding bfloat16 bit patterns; ``rows`` int64 [n] is each
    row's table row (-1: skip); ``docs``/``pos``/``ids`` int64 [n] are the references stored with a
    top value; ``sums`` float64 [R, width], ``sumsq`` float64 [width], ``top_values`` float32
    [width, k] (descending, -inf where unfilled) and ``top_refs`` int64 [width, k, 3] are updated
    in place. Compiled on first use and cached on disk by numba (a few seconds the first time).
    """
    if numba is None or os.environ.get("NEUROSEARCH_NO_NUMBA"):
        return None
    def kernel(x: Any, rows: Any, docs: Any, pos: Any, ids: Any, sums: Any, sumsq: Any,
               top_values: Any, top_refs: Any) -> None:
        _compiled(x, rows, docs, pos, ids, sums, sumsq, top_values, top_refs, numba.get_num_threads())

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


def _add_rows(total: Any, total_rows: Any, start: int, source: Any, source_rows: Any) -> None:
    for i in prange(total_rows.shape[0]):  # distinct total rows: no two threads write one row
        t = total_rows[i]
        s = source_rows[i]
        for j in range(source.shape[1]):
            total[t, start + j] += source[s, j]


@lru_cache(maxsize=1)
def fused_add_rows() -> Callable[..., None] | None:
    """``add(total, total_rows, start, source, source_rows)``: ``total[total_rows[i], start + j] +=
    source[source_rows[i], j]`` for every i and every column j of ``source`` (float64), in place,
    rows in parallel (``total_rows`` must be distinct). The same additions as numpy's fancy-indexed
    ``+=``, without its gathered copies. None without numba."""
    if numba is None or os.environ.get("NEUROSEARCH_NO_NUMBA"):
        return None
    return numba.njit(parallel=True, boundscheck=False, cache=True)(_add_rows)
