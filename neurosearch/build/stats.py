"""Streaming per-token neuron statistics: the raw material of Eq. 1.

One pass over the corpus gives, for every neuron and every vocabulary token, the sum of the neuron's
activations over the token's occurrences and the token's count (so the per-token mean of Eq. 1 is
sum / count), each neuron's sum of squares (corpus mean and variance), and each neuron's top-k
activating occurrences as references (document, position, token id, value) -- never text.
[CLS], [SEP] and [PAD] are not counted.

Everything is additive, so a corpus can be cut into shards that are processed anywhere and merged
(:meth:`TokenStats.merge`); the build checkpoints the running total after every shard.

Speed: activations are consumed inside the forward hooks, layer by layer, while they are hot in
cache. One fused pass (numba, :mod:`neurosearch.build.kernels`) adds each value to its token's float64
sum, its square to the neuron's, and keeps block maxima for the top-k screen; without numba, a
float64 copy feeds ``index_put_`` on token ids and a matrix product for the squares. The top-k
search only looks at values above each neuron's current k-th best, so after the first batch it
touches few elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from neurosearch.config import StatsConfig
from neurosearch.corpus import Windows, make_windows
from neurosearch.errors import NeurosearchError
from neurosearch.model.loading import LoadedModel, NeuronHooks, NeuronSite
from neurosearch.format.atomic import save_npy_atomic
from neurosearch.format.layout import STATS_ARRAYS, stats_array

STATS_FILES = STATS_ARRAYS  # the arrays of a statistics directory; "totals" (written last) marks it complete


@dataclass
class TokenStats:
    """Additive statistics of a corpus (or a shard of it) for one neuron site."""

    token_ids: np.ndarray
    """int64 [T], sorted vocabulary ids seen at least once."""
    token_counts: np.ndarray
    """int64 [T], occurrences of each token."""
    token_sums: np.ndarray
    """float64 [T, N], per-token sum of each neuron's activation (Eq. 1 numerator)."""
    neuron_sumsq: np.ndarray
    """float64 [N], sum of squared activations over all counted tokens."""
    top_values: np.ndarray
    """float32 [N, k], each neuron's k largest activations, best first (-inf where unfilled)."""
    top_refs: np.ndarray
    """int64 [N, k, 3]: (document index, position in the document's word pieces, token id)."""
    documents: int = 0
    windows: int = 0

    @property
    def tokens(self) -> int:
        return int(self.token_counts.sum())

    @property
    def n_neurons(self) -> int:
        return int(self.neuron_sumsq.shape[0])

    def neuron_mean(self) -> np.ndarray:
        return self.token_sums.sum(axis=0) / max(self.tokens, 1)

    def neuron_var(self) -> np.ndarray:
        mean = self.neuron_mean()
        return np.maximum(self.neuron_sumsq / max(self.tokens, 1) - mean**2, 0.0)

    def token_means(self) -> np.ndarray:
        """Eq. 1: [T, N] average activation of each neuron over each token's occurrences."""
        return self.token_sums / self.token_counts[:, None]

    def merge(self, other: "TokenStats") -> "TokenStats":
        """Statistics of the two corpora together (documents of ``other`` keep their indices)."""
        ids = np.union1d(self.token_ids, other.token_ids)
        counts = np.zeros(len(ids), dtype=np.int64)
        sums = np.zeros((len(ids), self.n_neurons), dtype=np.float64)
        for part in (self, other):
            rows = np.searchsorted(ids, part.token_ids)
            counts[rows] += part.token_counts
            sums[rows] += part.token_sums
        values, refs = merge_top(self.top_values, self.top_refs, other.top_values, other.top_refs)
        return TokenStats(
            token_ids=ids,
            token_counts=counts,
            token_sums=sums,
            neuron_sumsq=self.neuron_sumsq + other.neuron_sumsq,
            top_values=values,
            top_refs=refs,
            documents=self.documents + other.documents,
            windows=self.windows + other.windows,
        )

    def save(self, directory: Path) -> None:
        """Write every array atomically (temp file + rename); ``totals`` last marks completion."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in STATS_FILES[:-1]:
            save_npy_atomic(directory / stats_array(name), getattr(self, name))
        save_npy_atomic(directory / stats_array("totals"), np.array([self.documents, self.windows], dtype=np.int64))

    @classmethod
    def load(cls, directory: Path) -> "TokenStats":
        if not (directory / stats_array("totals")).is_file():
            raise NeurosearchError(f"no complete statistics in {directory}")
        arrays = {name: np.load(directory / stats_array(name), allow_pickle=False) for name in STATS_FILES}
        documents, windows = (int(v) for v in arrays.pop("totals"))
        return cls(**arrays, documents=documents, windows=windows)


def merge_top(
    values_a: np.ndarray, refs_a: np.ndarray, values_b: np.ndarray, refs_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two per-neuron top-k lists; ties keep ``a`` first, so merging is deterministic."""
    k = values_a.shape[1]
    values = np.concatenate([values_a, values_b], axis=1)
    refs = np.concatenate([refs_a, refs_b], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(refs, order[:, :, None], axis=1)


class StatsAccumulator:
    """Dense running statistics, updated from inside the forward hooks of one site."""

    def __init__(self, site: NeuronSite, vocab_size: int, top_k: int):
        self.site = site
        self.vocab_size = vocab_size
        self.top_k = top_k
        width = site.neurons_per_layer
        self.sums = [torch.zeros(vocab_size, width, dtype=torch.float64) for _ in range(site.n_layers)]
        self.sumsq = torch.zeros(site.n_layers, width, dtype=torch.float64)
        self.counts = torch.zeros(vocab_size, dtype=torch.int64)
        self.top_values = torch.full((site.n_layers, width, top_k), float("-inf"), dtype=torch.float32)
        self.top_refs = torch.zeros((site.n_layers, width, top_k, 3), dtype=torch.int64)
        self.documents = 0
        self.windows = 0
        self._buffer = torch.empty(0, dtype=torch.float64)
        self._ones = torch.ones(1, 0, dtype=torch.float64)
        self._batch: dict[str, torch.Tensor] = {}
        from neurosearch.build.kernels import fused_accumulate

        self._kernel = fused_accumulate()

    # -- loading and exporting the running total -------------------------------------------------
    def load(self, stats: TokenStats) -> None:
        width = self.site.neurons_per_layer
        ids = torch.from_numpy(stats.token_ids)
        self.counts.zero_()
        self.counts[ids] = torch.from_numpy(stats.token_counts)
        sums = torch.from_numpy(stats.token_sums)
        for layer, table in enumerate(self.sums):
            table.zero_()
            table[ids] = sums[:, layer * width : (layer + 1) * width]
        self.sumsq.copy_(torch.from_numpy(stats.neuron_sumsq).view(self.site.n_layers, width))
        self.top_values.copy_(torch.from_numpy(stats.top_values).view_as(self.top_values))
        self.top_refs.copy_(torch.from_numpy(stats.top_refs).view_as(self.top_refs))
        self.documents, self.windows = stats.documents, stats.windows

    def export(self) -> TokenStats:
        ids = torch.nonzero(self.counts).flatten()
        sums = torch.cat([table[ids] for table in self.sums], dim=1)
        n = self.site.n_neurons
        return TokenStats(
            token_ids=ids.numpy().astype(np.int64),
            token_counts=self.counts[ids].numpy().copy(),
            token_sums=sums.numpy(),
            neuron_sumsq=self.sumsq.reshape(n).numpy().copy(),
            top_values=self.top_values.reshape(n, self.top_k).numpy().copy(),
            top_refs=self.top_refs.reshape(n, self.top_k, 3).numpy().copy(),
            documents=self.documents,
            windows=self.windows,
        )

    # -- per batch --------------------------------------------------------------------------------
    def begin_batch(self, input_ids: torch.Tensor, valid: torch.Tensor, docs: torch.Tensor, pos: torch.Tensor) -> None:
        """Set the token ids and references of the batch about to run through the model."""
        flat_ids = input_ids.reshape(-1)
        flat_valid = valid.reshape(-1)
        self._batch = {
            "ids": flat_ids,
            "invalid_rows": torch.nonzero(~flat_valid).flatten(),
            "valid_rows": flat_valid,
            "docs": docs.reshape(-1),
            "pos": pos.reshape(-1),
            "rows": torch.where(flat_valid, flat_ids, -1).numpy(),  # the kernel's row -> token (-1: skip)
        }
        self.counts += torch.bincount(flat_ids[flat_valid], minlength=self.vocab_size)

    def observe(self, layer: int, activations: torch.Tensor) -> None:
        """Fold one layer's activations [batch, seq, width] into the running statistics."""
        batch = self._batch
        width = self.site.neurons_per_layer
        x = activations.detach().reshape(-1, width)
        if x.device.type != "cpu":  # statistics live in host memory; the model may not
            x = x.float().cpu()
        if self._kernel is not None:
            x = x.float().contiguous()
            block = self.SCREEN_BLOCK
            block_max = torch.full(((x.shape[0] + block - 1) // block, width), float("-inf"))
            self._kernel(x.numpy(), batch["rows"], self.sums[layer].numpy(), self.sumsq[layer].numpy(),
                         block_max.numpy(), block)
            self._update_top(layer, x, batch, block_max)
            return
        n = x.shape[0]
        if self._buffer.numel() < n * width:  # float64 scratch of the torch path, grown once
            self._buffer = torch.empty(n * width, dtype=torch.float64)
            self._ones = torch.ones(1, n, dtype=torch.float64)
        x64 = self._buffer[: n * width].view(n, width)
        x64.copy_(x)
        x64.index_fill_(0, batch["invalid_rows"], 0.0)
        # index_put_ touches only the batch's rows; index_add_ walks the whole [V, width] table
        self.sums[layer].index_put_((batch["ids"],), x64, accumulate=True)
        self.sumsq[layer] += torch.mm(self._ones[:, :n], x64.square_()).squeeze(0)
        self._update_top(layer, x, batch)

    SCREEN_BLOCK = 256

    def _screen(
        self, x: torch.Tensor, threshold: torch.Tensor, batch: dict[str, torch.Tensor],
        block_max: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rows, cols) of valid entries above their column's threshold, grouped by column.

        Block maxima (one cheap reduction) say which (row block, column) pairs can hold a
        candidate; only those are read again. None when too many blocks qualify to be worth it.
        """
        n, width = x.shape
        block = self.SCREEN_BLOCK
        if block_max is None:  # the fused kernel computes them on its pass
            full = (n // block) * block
            parts = [x[:full].view(-1, block, width).amax(dim=1)] if full else []
            if full < n:
                parts.append(x[full:].amax(dim=0, keepdim=True))
            block_max = torch.cat(parts) if len(parts) > 1 else parts[0]
        threshold = threshold.to(x.dtype)
        blocks, cols = torch.nonzero(block_max > threshold, as_tuple=True)
        if blocks.numel() * block * 4 > n * width:
            return None
        rows = blocks.unsqueeze(1) * block + torch.arange(block).unsqueeze(0)  # [C, block]
        inside = rows < n
        rows = rows.clamp(max=n - 1)
        values = x[rows, cols.unsqueeze(1)]
        hit = (values > threshold[cols].unsqueeze(1)) & inside & batch["valid_rows"][rows]
        rows, cols = rows[hit], cols.unsqueeze(1).expand_as(hit)[hit]
        order = torch.argsort(cols * n + rows)  # grouped by column, rows ascending
        return rows[order], cols[order]

    def _update_top(self, layer: int, x: torch.Tensor, batch: dict[str, torch.Tensor],
                    block_max: torch.Tensor | None = None) -> None:
        """Merge the batch's values above each neuron's current k-th best into its top-k list."""
        k = self.top_k
        width = x.shape[1]
        best = self.top_values[layer]  # [width, k], descending
        threshold = best[:, -1]
        found = self._screen(x, threshold, batch, block_max) if bool(torch.isfinite(threshold).all()) else None
        if found is not None:
            rows, cols = found
            if cols.numel() == 0:
                return
            counts = torch.bincount(cols, minlength=width)
            most = int(counts.max())
        if found is None or most > 4 * k:  # first batches: a dense top-k of the batch is cheaper
            masked = x.float().index_fill(0, batch["invalid_rows"], float("-inf"))
            top = torch.topk(masked, min(k, x.shape[0]), dim=0)
            keep = torch.isfinite(top.values.t())
            cols = torch.arange(width).unsqueeze(1).expand(width, top.values.shape[0])[keep]
            rows = top.indices.t()[keep]
            counts = torch.bincount(cols, minlength=width)
            most = int(counts.max())
        slot = torch.arange(cols.numel()) - (torch.cumsum(counts, 0) - counts)[cols]
        values = torch.full((width, k + most), float("-inf"))
        values[:, :k] = best
        values[cols, k + slot] = x[rows, cols].float()
        refs = torch.zeros((width, k + most, 3), dtype=torch.int64)
        refs[:, :k] = self.top_refs[layer]
        refs[cols, k + slot] = torch.stack([batch["docs"][rows], batch["pos"][rows], batch["ids"][rows]], dim=1)
        # stable: on ties the older entry (lower slot) wins, so results do not depend on batching order
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
        self.top_values[layer] = torch.gather(values, 1, order)
        self.top_refs[layer] = torch.gather(refs, 1, order.unsqueeze(-1).expand(width, k, 3))


ProgressFn = Callable[[int], None]


def vocab_size(loaded: LoadedModel) -> int:
    """Rows of the per-token tables: every id the tokenizer or the embedding table can produce."""
    return max(len(loaded.tokenizer), int(loaded.encoder.get_input_embeddings().weight.shape[0]))


def batches_by_length(windows: Windows, batch_tokens: int) -> list[list[int]]:
    """Group window indices, longest first, into batches of at most ``batch_tokens`` padded tokens."""
    order = sorted(range(len(windows.input_ids)), key=lambda i: -len(windows.input_ids[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for index in order:
        length = len(windows.input_ids[index])
        width = max(width, length) if current else length
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], length
        current.append(index)
    if current:
        batches.append(current)
    return batches


def pad_batch(windows: Windows, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Padded tensors for a batch of windows, with each token's document and document position."""
    length = max(len(windows.input_ids[i]) for i in indices)
    size = len(indices)
    input_ids = torch.full((size, length), pad_id, dtype=torch.int64)
    attention = torch.zeros((size, length), dtype=torch.int64)
    docs = torch.zeros((size, length), dtype=torch.int64)
    pos = torch.zeros((size, length), dtype=torch.int64)
    for row, index in enumerate(indices):
        ids = windows.input_ids[index]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        docs[row] = windows.document[index]
        pos[row] = windows.start[index] + torch.arange(length) - 1  # position 0 is [CLS]
    return {"input_ids": input_ids, "attention_mask": attention, "docs": docs, "pos": pos}


def special_mask(tokenizer: object, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """True where a token counts for Eq. 1: attended and not [CLS]/[SEP]/[PAD]."""
    excluded = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}  # type: ignore[attr-defined]
    valid = attention_mask.bool()
    for token_id in excluded:
        if token_id is not None:
            valid &= input_ids != token_id
    return valid


def accumulate(
    loaded: LoadedModel,
    site: NeuronSite,
    accumulator: StatsAccumulator | Any,
    documents: Sequence[str],
    first_document: int,
    config: StatsConfig,
    window: int,
    on_tokens: ProgressFn | None = None,
    on_windows: Callable[[int, int], None] | None = None,
) -> None:
    """Run the model over ``documents`` (corpus indices from ``first_document``) and accumulate.

    ``accumulator`` is a :class:`StatsAccumulator` or anything with its batch interface
    (``begin_batch``, ``observe``, ``documents``, ``windows``: the contexts stage's). ``on_tokens(n)``
    gets the counted tokens of each batch, ``on_windows(done, total)`` the windows of each batch and
    of the whole call (progress a person can follow).
    """
    tokenizer = loaded.tokenizer
    windows = make_windows(tokenizer, list(documents), first_document, window)
    accumulator.documents += len(documents)
    accumulator.windows += len(windows.input_ids)
    total = len(windows.input_ids)
    with NeuronHooks(site, lambda layer, x: accumulator.observe(layer, x)), torch.inference_mode():
        for indices in batches_by_length(windows, config.batch_tokens):
            batch = pad_batch(windows, indices, tokenizer.pad_token_id)
            valid = special_mask(tokenizer, batch["input_ids"], batch["attention_mask"])
            accumulator.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
            with loaded.autocast():
                loaded.encoder(
                    input_ids=batch["input_ids"].to(loaded.device),
                    attention_mask=batch["attention_mask"].to(loaded.device),
                )
            if on_tokens is not None:
                on_tokens(int(valid.sum()))
            if on_windows is not None:
                on_windows(len(indices), total)


def compute_stats(
    loaded: LoadedModel,
    site: NeuronSite,
    documents: Iterable[str],
    config: StatsConfig,
    window: int,
    first_document: int = 0,
    on_tokens: ProgressFn | None = None,
) -> TokenStats:
    """Statistics of a run of documents in memory (no checkpoints): the library's simplest entry."""
    accumulator = StatsAccumulator(site, vocab_size(loaded), config.top_k)
    accumulate(loaded, site, accumulator, list(documents), first_document, config, window, on_tokens)
    return accumulator.export()
