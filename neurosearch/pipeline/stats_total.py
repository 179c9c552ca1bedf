"""A build's running statistics: one dense host table over the vocabulary, shards added in order.

Each shard is accumulated from zero (:func:`~neurosearch.pipeline.stats.shard_statistics`) and then
added here, element by element, in shard order. The same additions happen whether the shards ran
in this process, were resumed from a checkpoint, or came back from Ray workers, so all three give
the same bits. Top-k lists merge stably (the total's entries first), which equals inserting the
shard's occurrences one by one after the total's, older first on ties.

Checkpoints are written straight from the table: rows of tokens seen so far, block by block, no
[T, N] export copy (:mod:`~neurosearch.pipeline.stats_store`); loading streams them back the same way.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from neurosearch.pipeline.stats_store import BLOCK_ROWS, directory_bytes, iter_row_blocks, read_arrays, row_index, write_stats
from neurosearch.format import layout
from neurosearch.format.atomic import write_json_atomic

_ADD_ROWS = 2048
"""Rows per fancy-indexed add: bounds the temporary copy numpy makes of the table's rows."""


class StatsTotal:
    """Per-token sums [V, N] float64, counts, squares, top-k and document totals of a build.

    With ``token_ids`` (sorted vocabulary ids: every token the corpus holds, from a counting pass)
    the table has one row per listed token instead of one per vocabulary id; the values, and what
    :meth:`save` writes, are the same bits either way."""

    def __init__(self, vocab_size: int, n_neurons: int, top_k: int, token_ids: np.ndarray | None = None):
        self.vocab_size = vocab_size
        self.n_neurons = n_neurons
        self.top_k = top_k
        self.token_ids = None if token_ids is None else np.asarray(token_ids, dtype=np.int64)
        self._row_of = row_index(vocab_size, self.token_ids)
        rows = vocab_size if self.token_ids is None else len(self.token_ids)
        self.counts = np.zeros(rows, dtype=np.int64)
        self.sums = np.zeros((rows, n_neurons), dtype=np.float64)
        self.sumsq = np.zeros(n_neurons, dtype=np.float64)
        self.top_values = np.full((n_neurons, top_k), -np.inf, dtype=np.float32)
        self.top_refs = np.zeros((n_neurons, top_k, 3), dtype=np.int64)
        self.documents = 0
        self.windows = 0

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())

    def add(self, token_ids: np.ndarray, token_counts: np.ndarray, column_blocks: Iterable[tuple[int, np.ndarray]],
            neuron_sumsq: np.ndarray, top_values: np.ndarray, top_refs: np.ndarray, documents: int,
            windows: int) -> None:
        """Add one shard: ``column_blocks`` yields (first column, [len(token_ids), width]) sums."""
        from neurosearch.pipeline.stats import merge_top

        ids = self._rows(np.asarray(token_ids, dtype=np.int64))
        if len(np.unique(ids)) != len(ids):
            raise ValueError("a shard's token ids must be distinct")
        self.counts[ids] += token_counts
        for start, block in column_blocks:
            stop = start + block.shape[1]
            for i0 in range(0, len(ids), _ADD_ROWS):
                rows = ids[i0 : i0 + _ADD_ROWS]
                self.sums[rows, start:stop] += block[i0 : i0 + _ADD_ROWS]
        self.sumsq += neuron_sumsq
        self.top_values, self.top_refs = merge_top(self.top_values, self.top_refs,
                                                   np.asarray(top_values, dtype=np.float32), top_refs)
        self.documents += documents
        self.windows += windows

    def add_accumulator(self, accumulator: Any) -> None:
        """Add a :class:`~neurosearch.pipeline.stats.StatsAccumulator` (any device), layer by layer.

        On the CPU with numba, each layer's table is added in place, row by row, in parallel
        (:func:`~neurosearch.pipeline.kernels.fused_add_rows`): the same additions, without the
        gathered copies of the numpy path."""
        from neurosearch.pipeline.kernels import fused_add_rows

        rows = accumulator.seen_rows()
        n = self.n_neurons
        ids = accumulator.seen_ids(rows)
        kernel = fused_add_rows() if accumulator.device.type == "cpu" else None
        blocks: Any = ()  # sums accumulated in this table already (``into``), or added by the kernel below
        if getattr(accumulator, "into", None) is self:
            pass
        elif kernel is None:
            blocks = accumulator.layer_blocks(rows)
        else:
            total_rows = self._rows(np.asarray(ids, dtype=np.int64))
            source_rows = rows.numpy().astype(np.int64)
            width = accumulator.site.neurons_per_layer
            for layer, table in enumerate(accumulator.sums):
                kernel(self.sums, total_rows, layer * width, table.numpy(), source_rows)
        self.add(ids, accumulator.counts[rows].cpu().numpy(), blocks,
                 accumulator.sumsq.reshape(n).cpu().numpy(), accumulator.top_values.reshape(n, -1).cpu().numpy(),
                 accumulator.top_refs.reshape(n, -1, 3).cpu().numpy(), accumulator.documents, accumulator.windows)

    def takes_in_place(self, device: str = "cpu") -> bool:
        """Whether a shard run on ``device`` may accumulate straight into this table
        (``StatsAccumulator(into=...)``): nothing added yet, a CPU, and the numba kernel present."""
        from neurosearch.pipeline.kernels import fused_accumulate

        return (device == "cpu" and self.documents == 0 and self.windows == 0 and not self.counts.any()
                and fused_accumulate() is not None)

    def layer_tables(self, width: int) -> list[np.ndarray]:
        """The table's columns of each layer of ``width`` neurons: [rows, width] views, in place."""
        if self.n_neurons % width:
            raise ValueError(f"{self.n_neurons} columns are not layers of {width}")
        return [self.sums[:, start : start + width] for start in range(0, self.n_neurons, width)]

    def add_stats(self, stats: Any) -> None:
        """Add a :class:`~neurosearch.pipeline.stats.TokenStats` (a shard computed elsewhere)."""
        self.add(stats.token_ids, stats.token_counts, [(0, np.asarray(stats.token_sums))], stats.neuron_sumsq,
                 stats.top_values, stats.top_refs, stats.documents, stats.windows)

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Table rows of vocabulary ``ids``."""
        if self._row_of is None:
            return ids
        rows = self._row_of[ids]
        if (rows < 0).any():
            raise ValueError("a shard holds a token the counting pass did not find")
        return rows

    def seen(self) -> np.ndarray:
        """Table rows of the tokens seen at least once."""
        return np.flatnonzero(self.counts)

    def _ids(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.token_ids is None else self.token_ids[rows]

    def _row_blocks(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        for i0 in range(0, len(rows), BLOCK_ROWS):
            yield self.sums[rows[i0 : i0 + BLOCK_ROWS]]

    def save(self, directory: Path, compress: str = "none") -> None:
        """Write the seen rows straight from the table (one block at a time)."""
        rows = self.seen()
        write_stats(directory, token_ids=self._ids(rows), token_counts=self.counts[rows],
                    row_blocks=lambda: self._row_blocks(rows), n_neurons=self.n_neurons, neuron_sumsq=self.sumsq,
                    top_values=self.top_values, top_refs=self.top_refs, documents=self.documents,
                    windows=self.windows, compress=compress)

    def load(self, directory: Path) -> None:
        """Replace the total by a saved one (a checkpoint), streaming its rows into the table."""
        arrays = read_arrays(directory, mmap=True)
        ids = self._rows(arrays["token_ids"])
        if arrays["neuron_sumsq"].shape != (self.n_neurons,) or arrays["top_values"].shape[1] != self.top_k:
            raise ValueError(f"{directory} holds statistics of another shape")
        self.counts[:] = 0
        self.counts[ids] = arrays["token_counts"]
        self.sums[:] = 0.0
        start = 0
        for block in iter_row_blocks(arrays["token_sums"]):
            self.sums[ids[start : start + len(block)]] = block
            start += len(block)
        self.sumsq[:] = arrays["neuron_sumsq"]
        self.top_values[:] = arrays["top_values"]
        self.top_refs[:] = arrays["top_refs"]
        self.documents, self.windows = (int(v) for v in arrays["totals"])


WRITE_BYTES_PER_SECOND = 1e9
"""What a checkpoint is assumed to write per second before one has been timed."""


class CheckpointClock:
    """When to checkpoint so that writing checkpoints costs at most ``share`` of the run's time.

    Until one is written its cost is the caller's ``estimate`` (the bytes it would write at
    :data:`WRITE_BYTES_PER_SECOND`), so the first comes once the run has spent estimate / share
    seconds (the first shard of a run whose tables are small; later in a short run with large ones,
    which can end before any is due); after a checkpoint that took c seconds, the next waits until
    c / share seconds have passed, unless the run is expected to end before c / share seconds
    more. With share 0 only the first shard is checkpointed."""

    def __init__(self, share: float):
        self.share = share
        self.cost: float | None = None
        self.since = time.time()

    def due(self, estimate: float = 0.0, remaining: float | None = None) -> bool:
        """Whether to write one now; ``remaining``: the run's expected seconds left (None: unknown).
        A run expected to end before another checkpoint would be due skips it: what it would
        protect is less than what it would cost."""
        if self.cost is None and self.share == 0:
            return True
        cost = estimate if self.cost is None else self.cost
        if self.share > 0 and remaining is not None and remaining * self.share < cost:
            return False
        return self.share > 0 and (time.time() - self.since) * self.share >= cost

    def wrote(self, seconds: float) -> None:
        self.cost = seconds
        self.since = time.time()


def write_checkpoint(out: Path, number: int, total: StatsTotal, identity: dict[str, Any], compress: str) -> int:
    """Write the index ``out``'s checkpoint after shard ``number`` from the running total (a temporary
    folder renamed when complete, its progress file last); older checkpoints go after. Returns its
    size in bytes."""
    target = out / layout.checkpoint_dir(number)
    root = target.parent
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    total.save(tmp, compress)
    write_json_atomic(tmp / layout.CHECKPOINT_PROGRESS,
                      {"shards": number, "documents": total.documents, "identity": identity})
    size = directory_bytes(tmp)
    tmp.rename(target)
    for old in root.glob(f"{layout.CHECKPOINT_PREFIX}*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return size
