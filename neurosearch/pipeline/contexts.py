"""The contexts stage: what a neuron's (or cluster's) top tokens mean, with the evidence ``show`` prints.

Eq. 1 ranks a neuron's tokens by its *mean* activation over their occurrences, so the neuron's
single strongest firings (``neurons/top_refs.npy``, kept by the statistics pass) are often on
other tokens: the weekday neuron 2:1454 fires hardest on punctuation, and contexts taken from its
raw maxima contradict its profile. This stage runs one more forward pass over the corpus, after
the profiles and clusters are known, and records for the search method:

- for every neuron and each of its first ``ContextConfig.mean_tokens`` top tokens, the Eq. 1 mean
  activation on that token (``contexts/neuron_token_means.npy``; z = (mean - mu) / sd from
  ``neurons/mean.npy`` and ``std.npy``), and for the first ``context_tokens`` of them the single
  occurrence where the neuron fires most on that token (value and reference);
- for every cluster and each of its top tokens, the mean over its neurons of their Eq. 1 means and
  z-scores, and for the first ``context_tokens`` the occurrence and neuron with the highest z.

The pass only reads activations at (neuron, token) pairs that matter -- a neuron's own top tokens
and those of the clusters holding it -- through one compressed table per layer (kept token ->
its pairs), so it costs little beyond the forward pass. Nothing here is checkpointed: an
interrupted contexts stage starts again on the next build. The stage itself (which files, when it
is redone) is ``contexts_stage.py``; the files are named in ``format/layout.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch




@dataclass
class Slots:
    """The (neuron, kept token) pairs the pass records, sorted by neuron then token (unique)."""

    neuron: np.ndarray
    """int64 [G], flat neuron index of each pair."""
    row: np.ndarray
    """int64 [G], kept-token index of each pair."""
    n_kept: int

    def lookup(self, neurons: Any, rows: Any) -> np.ndarray:
        """Pair index of each (neuron, row); every pair asked for must have been planned."""
        keys = self.neuron * self.n_kept + self.row
        wanted = np.asarray(neurons, dtype=np.int64) * self.n_kept + np.asarray(rows, dtype=np.int64)
        found = np.searchsorted(keys, wanted)
        assert np.all(keys[np.minimum(found, keys.size - 1)] == wanted), "pair not planned"
        return found


def plan_slots(neuron_top: np.ndarray, clusters: Sequence[tuple[Sequence[int], Sequence[int]]], n_kept: int) -> Slots:
    """Pairs for every neuron's own top tokens (``neuron_top`` [N, M]) and, for each cluster
    ``(members, top tokens)``, every member with every one of the cluster's tokens."""
    n = neuron_top.shape[0]
    parts_neuron = [np.repeat(np.arange(n, dtype=np.int64), neuron_top.shape[1])]
    parts_row = [neuron_top.reshape(-1).astype(np.int64)]
    for members, tokens in clusters:
        members = np.asarray(members, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        parts_neuron.append(np.repeat(members, tokens.size))
        parts_row.append(np.tile(tokens, members.size))
    keys = np.unique(np.concatenate(parts_neuron) * n_kept + np.concatenate(parts_row))
    return Slots(keys // n_kept, keys % n_kept, n_kept)


class ContextAccumulator:
    """Per pair: the sum of the neuron's activations on the token, its maximum and where it was.

    One numba pass per layer (``kernels.fused_pairs``); without numba the same in torch, through
    index_add_ and scatter_reduce_ on the expanded (position, pair) entries.

    Has the interface :func:`neurosearch.pipeline.stats.accumulate` drives (``begin_batch``,
    ``observe``, ``documents``, ``windows``).
    """

    def __init__(self, slots: Slots, kept_ids: Sequence[int], vocab_size: int, n_layers: int, width: int):
        self.width = width
        self.documents = 0
        self.windows = 0
        kept_row = torch.full((vocab_size,), -1, dtype=torch.int64)
        kept_row[torch.as_tensor(np.asarray(kept_ids, dtype=np.int64))] = torch.arange(len(kept_ids))
        self.kept_row = kept_row
        size = slots.neuron.size
        self.sums = torch.zeros(size, dtype=torch.float64)
        self.maxes = torch.full((size,), float("-inf"), dtype=torch.float32)
        self.refs = torch.full((size, 3), -1, dtype=torch.int64)
        self.counts = torch.zeros(slots.n_kept, dtype=torch.int64)
        # per layer, a compressed table: kept row -> (column in the layer, pair index)
        self.tables: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        layer_of = slots.neuron // width
        for layer in range(n_layers):
            pairs = np.flatnonzero(layer_of == layer)
            pairs = pairs[np.argsort(slots.row[pairs], kind="stable")]
            offsets = np.zeros(slots.n_kept + 1, dtype=np.int64)
            np.cumsum(np.bincount(slots.row[pairs], minlength=slots.n_kept), out=offsets[1:])
            self.tables.append((torch.from_numpy(offsets), torch.from_numpy(slots.neuron[pairs] % width),
                                torch.from_numpy(pairs.astype(np.int64))))
        self._batch: dict[str, torch.Tensor] = {}
        from neurosearch.pipeline.kernels import fused_pairs

        self._kernel = fused_pairs()

    def begin_batch(self, input_ids: torch.Tensor, valid: torch.Tensor, docs: torch.Tensor, pos: torch.Tensor) -> None:
        ids = input_ids.reshape(-1)
        rows = self.kept_row[ids]
        where = torch.nonzero(valid.reshape(-1) & (rows >= 0)).flatten()
        self._batch = {"where": where, "rows": rows[where], "docs": docs.reshape(-1), "pos": pos.reshape(-1), "ids": ids}
        self.counts += torch.bincount(rows[where], minlength=self.counts.numel())

    def observe(self, layer: int, activations: torch.Tensor) -> None:
        batch = self._batch
        offsets, columns, pairs = self.tables[layer]
        if self._kernel is not None:
            x = activations.detach().reshape(-1, self.width).float().cpu().contiguous()
            self._kernel(x.numpy(), batch["where"].numpy(), batch["rows"].numpy(), offsets.numpy(), columns.numpy(),
                         pairs.numpy(), self.sums.numpy(), self.maxes.numpy(), self.refs.numpy(),
                         batch["docs"].numpy(), batch["pos"].numpy(), batch["ids"].numpy())
            return
        starts = offsets[batch["rows"]]
        counts = offsets[batch["rows"] + 1] - starts
        total = int(counts.sum())
        if total == 0:
            return
        x = activations.detach().reshape(-1, self.width)
        position = batch["where"].repeat_interleave(counts)
        run_start = torch.cumsum(counts, 0) - counts
        entry = starts.repeat_interleave(counts) + torch.arange(total) - run_start.repeat_interleave(counts)
        pair = pairs[entry]
        values = x[position.to(x.device), columns[entry].to(x.device)].float().cpu()
        self.sums.index_add_(0, pair, values.double())
        before = self.maxes[pair]
        self.maxes.scatter_reduce_(0, pair, values, reduce="amax")
        won = (values > before) & (values == self.maxes[pair])
        if bool(won.any()):
            at = position[won]
            self.refs[pair[won]] = torch.stack([batch["docs"][at], batch["pos"][at], batch["ids"][at]], dim=1)


def summarise(acc: ContextAccumulator, slots: Slots, neuron_top: np.ndarray,
              clusters: Sequence[tuple[Sequence[int], Sequence[int]]], mean: np.ndarray, std: np.ndarray,
              context_tokens: int) -> dict[str, np.ndarray]:
    """The stage's arrays (see docs/index-format.md) from a finished pass."""
    counts = acc.counts.numpy()[slots.row]
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_means = np.where(counts > 0, acc.sums.numpy() / np.maximum(counts, 1), np.nan)
    maxes, refs = acc.maxes.numpy(), acc.refs.numpy()
    n, m = neuron_top.shape
    t = min(context_tokens, m)
    own = slots.lookup(np.arange(n)[:, None], neuron_top)
    sd = np.maximum(std.astype(np.float64), 1e-6)
    out = {
        "neuron_token_means": pair_means[own].astype(np.float32),
        "neuron_token_values": maxes[own[:, :t]].astype(np.float32),
        "neuron_token_refs": refs[own[:, :t]].astype(np.int32),
    }
    width = max((len(tokens) for _, tokens in clusters), default=0)
    c_means = np.full((len(clusters), width), np.nan, dtype=np.float32)
    c_z = np.full((len(clusters), width), np.nan, dtype=np.float32)
    tc = min(context_tokens, width)
    c_values = np.full((len(clusters), tc), -np.inf, dtype=np.float32)
    c_neurons = np.full((len(clusters), tc), -1, dtype=np.int32)
    c_refs = np.full((len(clusters), tc, 3), -1, dtype=np.int32)
    for row, (members, tokens) in enumerate(clusters):
        members = np.asarray(members, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        if members.size == 0 or tokens.size == 0:
            continue
        pairs = slots.lookup(members[:, None], tokens[None, :])  # [members, tokens]
        means = pair_means[pairs]
        c_means[row, : tokens.size] = np.nanmean(means, axis=0) if np.isfinite(means).any() else np.nan
        z = (means - mean[members, None]) / sd[members, None]
        c_z[row, : tokens.size] = np.nanmean(z, axis=0) if np.isfinite(z).any() else np.nan
        shown = pairs[:, :tc]
        z_max = (maxes[shown] - mean[members, None]) / sd[members, None]  # -inf where never seen
        best = np.argmax(z_max, axis=0)
        for j, b in enumerate(best):
            if np.isfinite(maxes[shown[b, j]]):
                c_values[row, j] = maxes[shown[b, j]]
                c_neurons[row, j] = members[b]
                c_refs[row, j] = refs[shown[b, j]]
    out.update(cluster_token_means=c_means, cluster_token_z=c_z, cluster_token_values=c_values,
               cluster_token_neurons=c_neurons, cluster_token_refs=c_refs)
    return out
