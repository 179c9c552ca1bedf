"""The statistics on disk, and the running total a build adds its shards into.

A statistics directory (``INDEX/stats/``, or a checkpoint ``INDEX/checkpoint/stats-<shards>/``)
holds only the rows of tokens seen at least once:

- ``token_ids.npy`` int64 [T], ``token_counts.npy`` int64 [T], ``neuron_sumsq.npy`` float64 [N],
  ``neuron_sums.npy`` float64 [N] (the column sums of ``token_sums``, so that the corpus means need
  no pass over the rows), ``top_values.npy`` float32 [N, k], ``top_refs.npy`` int64 [N, k, 3];
- the per-token sums, float64 [T, N], either as ``token_sums.npy`` (memory-mapped by readers, which
  touch only the rows they ask for) or, with ``compress="zstd"``, as ``token_sums.zst``: blocks of
  ``block_rows`` rows, each byte-shuffled (the 8 bytes of every float64 grouped by significance,
  so the exponent and high mantissa bytes compress) and compressed as one zstd frame (level 1),
  with the frames' byte offsets in ``token_sums_blocks.npy`` int64 [B + 1]; a reader decompresses
  only the blocks that hold the rows it asks for;
- ``stats.json`` (how ``token_sums`` is stored) and ``totals.npy`` int64 [documents, windows],
  written last: a directory without it is incomplete.

Writers stream the rows block by block straight from the tables that hold them (no [T, N] copy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from neurosearch.config import STATS_COMPRESSIONS
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import atomic_path, save_npy_atomic, write_json_atomic

TOTALS = layout.stats_array("totals")
PLAIN_SUMS = layout.stats_array("token_sums")
BLOCK_ROWS = 256
"""Rows per written block (and per compressed frame): 18 MB of float64 at bert-base FFN width."""

RowBlocks = Callable[[], Iterator[np.ndarray]]
"""Yields the float64 [rows, N] blocks of ``token_sums`` in row order."""


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise NeurosearchError("compressed statistics need the zstandard package: pip install zstandard") from None
    return zstandard


def row_index(vocab_size: int, token_ids: np.ndarray | None) -> np.ndarray | None:
    """Vocabulary id -> row of a compact table holding ``token_ids`` (-1: not in it); None for a
    table with a row per vocabulary id."""
    if token_ids is None:
        return None
    index = np.full(vocab_size, -1, dtype=np.int64)
    index[token_ids] = np.arange(len(token_ids))
    return index


def shuffle_bytes(block: np.ndarray) -> bytes:
    """Byte planes of a float64 block: byte 0 of every value, then byte 1, ... (a lossless shuffle)."""
    return np.ascontiguousarray(block.view(np.uint8).reshape(-1, 8).T).tobytes()


def unshuffle_bytes(data: bytes, rows: int, width: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(8, rows * width)
    return np.ascontiguousarray(planes.T).view(np.float64).reshape(rows, width)


def write_stats(
    directory: Path, *, token_ids: np.ndarray, token_counts: np.ndarray, row_blocks: RowBlocks, n_neurons: int,
    neuron_sumsq: np.ndarray, top_values: np.ndarray, top_refs: np.ndarray, documents: int, windows: int,
    compress: str = "none",
) -> None:
    """Write a statistics directory; ``totals.npy`` last marks it complete."""
    if compress not in STATS_COMPRESSIONS:
        raise NeurosearchError(f"unknown statistics compression '{compress}' (choose from {', '.join(STATS_COMPRESSIONS)})")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TOTALS).unlink(missing_ok=True)
    for name in (PLAIN_SUMS, layout.STATS_COMPRESSED_SUMS, layout.STATS_COMPRESSED_BLOCKS):
        (directory / name).unlink(missing_ok=True)
    rows = int(len(token_ids))
    column_sums = np.zeros(n_neurons, dtype=np.float64)
    if compress == "zstd":
        compressor = _zstd().ZstdCompressor(level=1)
        offsets = [0]
        with atomic_path(directory / layout.STATS_COMPRESSED_SUMS) as tmp, open(tmp, "wb") as handle:
            for block in row_blocks():
                _add_rows(column_sums, block)
                frame = compressor.compress(shuffle_bytes(np.ascontiguousarray(block, dtype=np.float64)))
                handle.write(frame)
                offsets.append(offsets[-1] + len(frame))
        save_npy_atomic(directory / layout.STATS_COMPRESSED_BLOCKS, np.asarray(offsets, dtype=np.int64))
    else:
        with atomic_path(directory / PLAIN_SUMS) as tmp, open(tmp, "wb") as handle:
            # written, not memory-mapped: a mapped table's pages would count in the writer's memory
            np.lib.format.write_array_header_1_0(
                handle, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f8")), "fortran_order": False,
                         "shape": (rows, n_neurons)})
            written = 0
            for block in row_blocks():
                block = np.ascontiguousarray(block, dtype="<f8")
                if block.ndim != 2 or block.shape[1] != n_neurons:
                    raise ValueError(f"a row block of shape {block.shape} in a table of {n_neurons} columns")
                handle.write(block.data)
                _add_rows(column_sums, block)
                written += len(block)
            if written != rows:
                raise ValueError(f"{written} rows written for {rows} token ids")
    for name, array in (("token_ids", token_ids), ("token_counts", token_counts), ("neuron_sumsq", neuron_sumsq),
                        ("neuron_sums", column_sums), ("top_values", top_values), ("top_refs", top_refs)):
        save_npy_atomic(directory / layout.stats_array(name), array)
    write_json_atomic(directory / layout.STATS_LAYOUT, {"token_sums": compress, "block_rows": BLOCK_ROWS})
    save_npy_atomic(directory / TOTALS, np.array([documents, windows], dtype=np.int64))


def _add_rows(total: np.ndarray, block: np.ndarray) -> None:
    """Column sums in row order (the association of ``sum(axis=0)`` over the whole table)."""
    for row in block:
        total += row


class BlockRows:
    """Rows of a compressed ``token_sums``: ``shape``, ``rows[index_array]`` and ``blocks()``.

    Indexing with an integer array decompresses only the blocks that hold the requested rows.
    """

    def __init__(self, directory: Path, rows: int, width: int, block_rows: int):
        self.path = directory / layout.STATS_COMPRESSED_SUMS
        self.offsets = np.load(directory / layout.STATS_COMPRESSED_BLOCKS, allow_pickle=False)
        self.shape = (rows, width)
        self.block_rows = block_rows
        self.dtype = np.dtype(np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    def block(self, number: int, handle: Any) -> np.ndarray:
        start, stop = int(self.offsets[number]), int(self.offsets[number + 1])
        handle.seek(start)
        data = _zstd().ZstdDecompressor().decompress(handle.read(stop - start))
        rows = min(self.block_rows, self.shape[0] - number * self.block_rows)
        return unshuffle_bytes(data, rows, self.shape[1])

    def blocks(self) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as handle:
            for number in range(len(self.offsets) - 1):
                yield self.block(number, handle)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = np.asarray(index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise TypeError("compressed token sums are indexed by a 1-D integer array of rows")
        index = np.where(index < 0, index + self.shape[0], index)
        out = np.empty((len(index), self.shape[1]), dtype=np.float64)
        owner = index // self.block_rows
        with open(self.path, "rb") as handle:
            for number in np.unique(owner):
                where = np.flatnonzero(owner == number)
                out[where] = self.block(int(number), handle)[index[where] - number * self.block_rows]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = np.concatenate(list(self.blocks())) if len(self.offsets) > 1 else np.zeros(self.shape)
        return whole if dtype is None else whole.astype(dtype)


def read_arrays(directory: Path, mmap: bool) -> dict[str, Any]:
    """The arrays of a complete statistics directory; ``token_sums`` mapped or blockwise if ``mmap``."""
    if not (directory / TOTALS).is_file():
        raise NeurosearchError(f"no complete statistics in {directory}")
    names = ("token_ids", "token_counts", "neuron_sumsq", "top_values", "top_refs", "totals")
    arrays: dict[str, Any] = {name: np.load(directory / layout.stats_array(name), allow_pickle=False) for name in names}
    if (directory / layout.stats_array("neuron_sums")).is_file():
        arrays["neuron_sums"] = np.load(directory / layout.stats_array("neuron_sums"), allow_pickle=False)
    described = directory / layout.STATS_LAYOUT
    stored = json.loads(described.read_text()) if described.is_file() else {}
    if stored.get("token_sums", "none") == "zstd":
        sums: Any = BlockRows(directory, len(arrays["token_ids"]), len(arrays["neuron_sumsq"]),
                              int(stored.get("block_rows", BLOCK_ROWS)))
        arrays["token_sums"] = sums if mmap else np.asarray(sums)
    else:
        arrays["token_sums"] = np.load(directory / PLAIN_SUMS, mmap_mode="r" if mmap else None,
                                       allow_pickle=False)
    return arrays


def iter_row_blocks(token_sums: Any) -> Iterator[np.ndarray]:
    """Blocks of ``BLOCK_ROWS`` rows of an in-memory, mapped or compressed ``token_sums``.

    A memory-mapped table is read with plain reads from its file, not through the map: pages of a
    map that were touched count in the reader's resident memory (a pass over a 5 GB table would
    add 5 GB to it), pages read into the page cache do not."""
    if isinstance(token_sums, BlockRows):
        yield from token_sums.blocks()
        return
    if isinstance(token_sums, np.memmap) and token_sums.filename is not None and token_sums.ndim == 2 \
            and token_sums.flags.c_contiguous:
        rows, width = token_sums.shape
        row_bytes = width * token_sums.dtype.itemsize
        with open(token_sums.filename, "rb") as handle:
            handle.seek(token_sums.offset)
            for start in range(0, rows, BLOCK_ROWS):
                count = min(BLOCK_ROWS, rows - start)
                data = handle.read(count * row_bytes)
                yield np.frombuffer(data, dtype=token_sums.dtype).reshape(count, width)
        return
    for start in range(0, len(token_sums), BLOCK_ROWS):
        yield np.asarray(token_sums[start : start + BLOCK_ROWS])


def directory_bytes(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(directory) if entry.is_file())
