"""Streaming per-token neuron statistics: the raw material of Eq. 1.

One pass over the corpus gives, for every neuron and every vocabulary token, the sum of the neuron's
activations over the token's occurrences and the token's count (so the per-token mean of Eq. 1 is
sum / count), each neuron's sum of squares (corpus mean and variance), and each neuron's top-k
activating occurrences as references (document, position, token id, value) -- never text.
[CLS], [SEP] and [PAD] are not counted.

Everything is additive, so a corpus can be cut into shards that are processed anywhere and merged
(:meth:`TokenStats.merge`). The build accumulates every shard from zero in tables holding only the
shard's tokens (:func:`shard_statistics`) and adds it to a dense running total in shard order
(:mod:`~neurosearch.pipeline.stats_total`), which it checkpoints by time: one process, a resumed run
and Ray workers (:mod:`~neurosearch.pipeline.ray_stats`) give the same bits.

Speed: activations are consumed inside the forward hooks, layer by layer, while they are hot in
cache. On a CPU one fused numba kernel (:mod:`neurosearch.pipeline.kernels`) reads them in place
(bf16 as its bit pattern, or fp32), adds each value to its token's float64 sum and its square to
the neuron's, and keeps the top-k inline. Without numba, and on a GPU, torch does the same with
``index_put_`` on the tables' device (no per-layer copy to the host) and the top-k updates of
:mod:`~neurosearch.pipeline.torch_top`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from neurosearch.config import StatsConfig
from neurosearch.corpus import Windows, make_windows
from neurosearch.errors import NeurosearchError
from neurosearch.model.loading import LoadedModel, NeuronHooks, NeuronSite
from neurosearch.model.memory import buffer_threshold, reuse_freed_memory
from neurosearch.pipeline.stats_store import row_index



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
    neuron_sums: np.ndarray | None = None
    """float64 [N], the column sums of ``token_sums`` when stored (saves a pass over the rows)."""

    @property
    def tokens(self) -> int:
        return int(self.token_counts.sum())

    @property
    def n_neurons(self) -> int:
        return int(self.neuron_sumsq.shape[0])

    def neuron_mean(self) -> np.ndarray:
        sums = self.neuron_sums if self.neuron_sums is not None else np.asarray(self.token_sums).sum(axis=0)
        return sums / max(self.tokens, 1)

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

    def save(self, directory: Path, compress: str = "none") -> None:
        """Write the statistics directory (:mod:`~neurosearch.pipeline.stats_store`); ``totals`` last."""
        from neurosearch.pipeline.stats_store import iter_row_blocks, write_stats

        write_stats(directory, token_ids=self.token_ids, token_counts=self.token_counts,
                    row_blocks=lambda: iter_row_blocks(self.token_sums), n_neurons=self.n_neurons,
                    neuron_sumsq=self.neuron_sumsq, top_values=self.top_values, top_refs=self.top_refs,
                    documents=self.documents, windows=self.windows, compress=compress)

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> "TokenStats":
        """Read a statistics directory; with ``mmap`` the sums stay on disk and indexing them with
        rows reads only those rows (a memory map, or the compressed blocks that hold them)."""
        from neurosearch.pipeline.stats_store import read_arrays

        arrays = read_arrays(directory, mmap)
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


BACKENDS = ("auto", "numba", "torch")


class StatsAccumulator:
    """Running statistics of one site, updated from inside the forward hooks.

    Tables are per layer, on ``device`` (the model's: on CUDA the activations never leave the
    GPU; the sums are float64 there too and reach the host once, when the build adds the shard to
    its total). With ``token_ids`` (the sorted ids a shard can contain) the per-token tables hold
    only those rows; otherwise one row per vocabulary id. ``backend``: ``numba`` (the fused CPU
    kernel, :mod:`neurosearch.pipeline.kernels`), ``torch`` (``index_put_`` and torch top-k updates,
    any device), or ``auto`` (numba on a CPU when it is installed). ``dense_top`` picks the
    synchronisation-free top-k update of the torch path (default: off the CPU). ``into``: a build's
    empty :class:`~neurosearch.pipeline.stats_total.StatsTotal` whose table the per-token sums go
    straight into (the numba backend only; ``token_ids`` must be the total's): adding zero changes
    no bit, so this is the first shard added to the total without its own table or the add.
    """

    def __init__(self, site: NeuronSite, vocab_size: int, top_k: int, *, token_ids: np.ndarray | None = None,
                 device: str | torch.device = "cpu", backend: str = "auto", dense_top: bool | None = None,
                 into: Any = None):
        if backend not in BACKENDS:
            raise NeurosearchError(f"unknown statistics backend '{backend}' (choose from {', '.join(BACKENDS)})")
        self.site = site
        self.vocab_size = vocab_size
        self.top_k = top_k
        self.device = torch.device(device)
        self.token_ids = None if token_ids is None else np.asarray(token_ids, dtype=np.int64)
        self._row_of = row_index(vocab_size, self.token_ids)  # vocabulary id -> compact table row
        rows = (vocab_size if self.token_ids is None else len(self.token_ids)) + 1  # last: the torch path's
        # scratch row for special tokens and padding (never counted, never exported)
        width, layers = site.neurons_per_layer, site.n_layers
        dev = self.device
        from neurosearch.pipeline.kernels import fused_accumulate

        self._kernel = fused_accumulate() if backend != "torch" and dev.type == "cpu" else None
        if backend == "numba" and self._kernel is None:
            raise NeurosearchError("the numba statistics backend needs numba and a CPU device")
        self.into = into
        if into is not None:
            if self._kernel is None:
                raise NeurosearchError("only the numba statistics backend accumulates into a build's total")
            self.sums = [torch.from_numpy(table) for table in into.layer_tables(width)]
            if len(self.sums) != layers or self.sums[0].shape[0] != rows - 1:
                raise ValueError("the total's table does not match the accumulator's layers and tokens")
        else:
            self.sums = [torch.zeros(rows, width, dtype=torch.float64, device=dev) for _ in range(layers)]
        self.sumsq = torch.zeros(layers, width, dtype=torch.float64, device=dev)
        self.counts = torch.zeros(rows, dtype=torch.int64, device=dev)
        self.top_values = torch.full((layers, width, top_k), float("-inf"), dtype=torch.float32, device=dev)
        self.top_refs = torch.zeros((layers, width, top_k, 3), dtype=torch.int64, device=dev)
        self.documents = 0
        self.windows = 0
        self._buffer = torch.empty(0, dtype=torch.float64, device=dev)
        self._ones = torch.ones(1, 0, dtype=torch.float64, device=dev)
        self._batch: dict[str, Any] = {}
        self.dense_top = dev.type != "cpu" if dense_top is None else dense_top

    # -- exporting the running total ---------------------------------------------------------------
    def seen_rows(self) -> torch.Tensor:
        return torch.nonzero(self.counts).flatten()

    def seen_ids(self, rows: torch.Tensor) -> np.ndarray:
        """Vocabulary ids of table ``rows``."""
        rows_np = rows.cpu().numpy().astype(np.int64)
        return rows_np if self.token_ids is None else self.token_ids[rows_np]

    def layer_blocks(self, rows: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
        """(first column, float64 [len(rows), width] host array) of every layer, one at a time."""
        width = self.site.neurons_per_layer
        for layer, table in enumerate(self.sums):
            yield layer * width, table[rows].cpu().numpy()

    def add_to(self, total: Any) -> None:
        """Add these statistics to a build's :class:`~neurosearch.pipeline.stats_total.StatsTotal`."""
        total.add_accumulator(self)

    def export(self) -> TokenStats:
        rows = self.seen_rows()
        n = self.site.n_neurons
        return TokenStats(
            token_ids=self.seen_ids(rows),
            token_counts=self.counts[rows].cpu().numpy().copy(),
            token_sums=np.concatenate([block for _, block in self.layer_blocks(rows)], axis=1),
            neuron_sumsq=self.sumsq.reshape(n).cpu().numpy().copy(),
            top_values=self.top_values.reshape(n, self.top_k).cpu().numpy().copy(),
            top_refs=self.top_refs.reshape(n, self.top_k, 3).cpu().numpy().copy(),
            documents=self.documents,
            windows=self.windows,
        )

    # -- per batch --------------------------------------------------------------------------------
    def begin_batch(self, input_ids: torch.Tensor, valid: torch.Tensor, docs: torch.Tensor, pos: torch.Tensor) -> None:
        """Set the token ids and references of the batch about to run through the model."""
        flat_ids = input_ids.reshape(-1).cpu()
        flat_valid = valid.reshape(-1).cpu()
        ids_np = flat_ids.numpy()
        table_rows = ids_np if self._row_of is None else self._row_of[ids_np]
        rows = np.where(flat_valid.numpy(), table_rows, -1)  # the kernel's row -> table row (-1: skip)
        if self._row_of is not None and bool(np.any(flat_valid.numpy() & (table_rows < 0))):
            raise NeurosearchError("a batch holds a token outside the accumulator's token_ids")
        counted = torch.from_numpy(rows[rows >= 0])
        self.counts += torch.bincount(counted, minlength=len(self.counts)).to(self.device)
        batch: dict[str, Any] = {"rows": rows}
        if self._kernel is not None:
            batch.update(docs=docs.reshape(-1).cpu().numpy(), pos=pos.reshape(-1).cpu().numpy(), ids=ids_np)
        else:
            dev = self.device
            batch.update(
                ids=flat_ids.to(dev), docs=docs.reshape(-1).to(dev), pos=pos.reshape(-1).to(dev),
                valid_rows=flat_valid.to(dev), invalid_rows=torch.nonzero(~flat_valid).flatten().to(dev),
                table_rows=torch.from_numpy(np.where(rows >= 0, rows, len(self.counts) - 1)).to(dev),
            )
        self._batch = batch

    def observe(self, layer: int, activations: torch.Tensor) -> None:
        """Fold one layer's activations [batch, seq, width] into the running statistics."""
        batch = self._batch
        width = self.site.neurons_per_layer
        x = activations.detach().reshape(-1, width)
        if self._kernel is not None:  # read in place: bf16 as its bit pattern, fp32 as is
            x = x.cpu().contiguous()
            if x.dtype == torch.bfloat16:
                data = x.view(torch.int16).numpy()
            else:
                data = x.float().numpy()
            self._kernel(data, batch["rows"], batch["docs"], batch["pos"], batch["ids"], self.sums[layer].numpy(),
                         self.sumsq[layer].numpy(), self.top_values[layer].numpy(), self.top_refs[layer].numpy())
            return
        from neurosearch.pipeline.torch_top import update_top_dense, update_top_screened

        x = x.to(self.device)
        n = x.shape[0]
        if self._buffer.numel() < n * width:  # float64 scratch of the torch path, grown once
            self._buffer = torch.empty(n * width, dtype=torch.float64, device=self.device)
            self._ones = torch.ones(1, n, dtype=torch.float64, device=self.device)
        x64 = self._buffer[: n * width].view(n, width)
        x64.copy_(x)
        x64.index_fill_(0, batch["invalid_rows"], 0.0)
        # index_put_ touches only the batch's rows; index_add_ walks the whole [V, width] table
        self.sums[layer].index_put_((batch["table_rows"],), x64, accumulate=True)
        self.sumsq[layer] += torch.mm(self._ones[:, :n], x64.square_()).squeeze(0)
        update = update_top_dense if self.dense_top else update_top_screened
        update(self.top_values[layer], self.top_refs[layer], x, batch)


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
    windows: Windows | None = None,
) -> None:
    """Run the model over ``documents`` (corpus indices from ``first_document``) and accumulate.

    ``accumulator`` is a :class:`StatsAccumulator` or anything with its batch interface
    (``begin_batch``, ``observe``, ``documents``, ``windows``: the contexts stage's). ``on_tokens(n)``
    gets the counted tokens of each batch, ``on_windows(done, total)`` the windows of each batch and
    of the whole call (progress a person can follow). ``windows``: the documents' windows when the
    caller has made them already. Each forward pass ends at the site's last hooked layer: what
    comes after it (the rest of the last layer, later layers, a pooler) cannot change what was
    observed, so a pass computes only what its statistics read.
    """
    tokenizer = loaded.tokenizer
    if windows is None:
        windows = make_windows(tokenizer, list(documents), first_document, window)
    accumulator.documents += len(documents)
    accumulator.windows += len(windows.input_ids)
    total = len(windows.input_ids)
    last = site.n_layers - 1

    def observe(layer: int, x: torch.Tensor) -> None:
        accumulator.observe(layer, x)
        if layer == last:
            raise _SiteDone

    threshold = buffer_threshold(config.batch_tokens, widest_buffer(loaded, site, window))
    with NeuronHooks(site, observe), torch.inference_mode(), reuse_freed_memory(threshold):
        for indices in batches_by_length(windows, config.batch_tokens):
            batch = pad_batch(windows, indices, tokenizer.pad_token_id)
            valid = special_mask(tokenizer, batch["input_ids"], batch["attention_mask"])
            accumulator.begin_batch(batch["input_ids"], valid, batch["docs"], batch["pos"])
            try:
                with loaded.autocast():
                    loaded.encoder(
                        input_ids=batch["input_ids"].to(loaded.device),
                        attention_mask=batch["attention_mask"].to(loaded.device),
                    )
            except _SiteDone:
                pass
            if on_tokens is not None:
                on_tokens(int(valid.sum()))
            if on_windows is not None:
                on_windows(len(indices), total)


def widest_buffer(loaded: LoadedModel, site: NeuronSite, window: int) -> int:
    """Values per token of a pass's widest per-batch buffer: the FFN's inner layer, the attention
    scores (heads x window) or the site's units (SAE features)."""
    config = getattr(getattr(loaded, "encoder", None), "config", None)
    inner = int(getattr(config, "intermediate_size", 0) or getattr(config, "hidden_dim", 0) or 0)
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0) or 0)
    return max(site.neurons_per_layer, inner, heads * window)


class _SiteDone(Exception):
    """Raised by the last hooked layer to end a forward pass there (:func:`accumulate`)."""


def window_token_ids(tokenizer: object, windows: Windows) -> np.ndarray:
    """Sorted distinct token ids in ``windows`` that can count ([CLS], [SEP], [PAD] left out)."""
    if not windows.input_ids:
        return np.zeros(0, dtype=np.int64)
    ids = np.unique(np.concatenate([np.asarray(w, dtype=np.int64) for w in windows.input_ids]))
    excluded = [t for t in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)  # type: ignore[attr-defined]
                if t is not None]
    return ids[~np.isin(ids, excluded)]


def shard_statistics(
    loaded: LoadedModel,
    site: NeuronSite,
    documents: Sequence[str],
    first_document: int,
    config: StatsConfig,
    window: int,
    backend: str = "auto",
    on_tokens: ProgressFn | None = None,
    on_windows: Callable[[int, int], None] | None = None,
    layers: tuple[int, int] | None = None,
    into: Any = None,
) -> StatsAccumulator:
    """One shard's statistics from zero, in tables holding only the shard's tokens (on the model's
    device). Every shard is computed alike wherever it runs, and added to the total in shard order,
    so a build gives the same bits in one process, resumed, or spread over machines.

    ``layers`` (start, stop): only the neurons of those layers (one pass of a build within a memory
    budget, ``stats_plan.py``); each forward pass ends at the last of them. Their statistics are the
    same bits as in a pass over every layer. ``into``: the build's total when it is still empty
    and this process can add the shard's sums straight into its table
    (:meth:`~neurosearch.pipeline.stats_total.StatsTotal.takes_in_place`): the same bits, without
    the shard's own table or the add."""
    windows = make_windows(loaded.tokenizer, list(documents), first_document, window)
    part = site if layers is None else site.layers(*layers)
    token_ids = window_token_ids(loaded.tokenizer, windows) if into is None else into.token_ids
    accumulator = StatsAccumulator(part, vocab_size(loaded), config.top_k, device=loaded.device, backend=backend,
                                   token_ids=token_ids, into=into)
    accumulate(loaded, part, accumulator, documents, first_document, config, window, on_tokens, on_windows,
               windows=windows)
    return accumulator
