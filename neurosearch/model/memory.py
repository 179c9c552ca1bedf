"""Keep the memory of freed activation buffers for the next batch (glibc's allocator).

A forward pass allocates and frees the same large activation buffers on every batch. glibc serves a
request above its mmap threshold (at most 32 MiB unless set) with a fresh mapping and returns it to
the system when it is freed, so every batch faults the same memory in again, page by page
(measured in ``docs/results/benchmarks.md``). :func:`reuse_freed_memory` raises the threshold
above the pass's largest buffer for the duration of a pass, so those buffers come from (and go
back to) the heap; elsewhere, and off glibc, nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MIB = 1 << 20
DYNAMIC_MMAP_MAX = 32 * _MIB
"""glibc's largest automatic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
CEILING = 1 << 30
"""The threshold never goes above this: a larger buffer is mapped as before."""


@lru_cache(maxsize=1)
def _mallopt() -> Any:
    """glibc's ``mallopt``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: AttributeError elsewhere)
        function = libc.mallopt
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def buffer_threshold(batch_tokens: int, widest: int, item_bytes: int = 4) -> int:
    """The mmap threshold for a pass whose largest per-batch buffer is ``batch_tokens`` x ``widest``
    values of ``item_bytes`` (with a quarter to spare), between glibc's own maximum and
    :data:`CEILING`."""
    need = batch_tokens * widest * item_bytes * 5 // 4
    return int(min(max(need, DYNAMIC_MMAP_MAX), CEILING))


@contextmanager
def reuse_freed_memory(threshold: int) -> Iterator[bool]:
    """For the ``with`` block, serve allocations up to ``threshold`` bytes from the heap and keep up
    to twice that freed at its top (yields whether it could; False off glibc). On exit the
    thresholds become glibc's automatic maximum (32 MiB, trim 64 MiB), which is where its own
    adjustment ends after the first large buffer is freed."""
    mallopt = _mallopt()
    if mallopt is None or threshold <= DYNAMIC_MMAP_MAX:
        yield False
        return
    applied = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    try:
        yield applied
    finally:
        mallopt(_M_MMAP_THRESHOLD, DYNAMIC_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, 2 * DYNAMIC_MMAP_MAX)
