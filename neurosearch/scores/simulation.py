"""The simulation score, offline: how well a unit's explanation predicts its activations on text it
was not built from.

The simulator is a token lookup (OpenAI's automated-interpretability baseline): the simulated
activation of a unit at a token is the token's weight in the unit's explanation (its top tokens,
``units.py``), 0 for a token it does not list. The score is the Pearson correlation between
simulated and real activations over every counted token of the held-out windows ("all at once"),
and, apart, over a sample of windows per unit: its ``top_windows`` strongest (by its largest
activation in the window) and ``random_windows`` drawn at random ("top and random"). The
calibration scores every unit with the explanation of another unit of its group (a fixed random
permutation): those correlations sit near 0 when the score measures anything.

Sums are accumulated per window and unit (float64 over the run), so both scores come from one
forward pass; a correlation whose simulated activations never vary (no listed token occurred) is
undefined and left out (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from neurosearch.scores.units import UnitSet, cluster_activations, explanation_table

if TYPE_CHECKING:
    import torch

MOMENTS = ("s", "ss", "a", "aa", "sa")
"""The per-window sums: simulated, its square, real, its square, their product."""


def correlation(n: np.ndarray | float, s: np.ndarray, ss: np.ndarray, a: np.ndarray, aa: np.ndarray,
                sa: np.ndarray) -> np.ndarray:
    """Pearson correlation from sums over ``n`` tokens (NaN where either side does not vary)."""
    n = np.asarray(n, dtype=np.float64)
    cov = n * sa - s * a
    var_s = n * ss - s * s
    var_a = n * aa - a * a
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(var_s * var_a)
    scale = np.maximum(np.abs(n * ss), s * s) * 1e-9  # float rounding of a constant is not variation
    r = np.where((var_s > scale) & (var_a > np.maximum(np.abs(n * aa), a * a) * 1e-9), r, np.nan)
    return np.clip(r, -1.0, 1.0)


@dataclass
class SimulationSums:
    """Per-window sums of every unit, for the explanation and for the shuffled one."""

    units: int
    windows: list[np.ndarray] = field(default_factory=list)
    """Per window: [5, U] sums (:data:`MOMENTS`; float64 within a window, stored as float32)."""
    shuffled: list[np.ndarray] = field(default_factory=list)
    """Per window: [3, U] float64 sums of the shuffled explanation (s, ss, sa)."""
    peaks: list[np.ndarray] = field(default_factory=list)
    """Per window: [U] float32 each unit's largest activation in it."""
    counts: list[int] = field(default_factory=list)
    """Per window: counted tokens."""
    token_ids: list[np.ndarray] = field(default_factory=list)
    """Per window: the ids of its counted tokens (the detection score quotes them)."""
    peak_at: list[np.ndarray] = field(default_factory=list)
    """Per window: [U] int16 the position of each unit's largest activation in it."""


class SimulationAccumulator:
    """Reads every neuron at every counted token of a batch (the statistics pass's interface:
    ``begin_batch``, ``observe``) and adds each unit's sums per window."""

    def __init__(self, units: UnitSet, n_layers: int, neurons_per_layer: int, kept_of_id: np.ndarray,
                 permutation: np.ndarray):
        self.units = units
        self.n_layers = n_layers
        self.width = neurons_per_layer
        self.kept_of_id = kept_of_id
        """Kept-token index of every vocabulary id (the table's last row for any other token)."""
        self.table = explanation_table(units, int(kept_of_id.max()))
        self.permutation = permutation
        self.sums = SimulationSums(units.size)
        self.documents = 0
        self.windows = 0
        self.tokens = 0
        self._valid: torch.Tensor | None = None
        self._kept: np.ndarray | None = None
        self._ids: np.ndarray | None = None
        self._rows: np.ndarray | None = None
        self._values: np.ndarray | None = None

    def begin_batch(self, input_ids: torch.Tensor, valid: torch.Tensor, docs: torch.Tensor, pos: torch.Tensor) -> None:
        self._valid = valid
        mask = valid.numpy()
        self._ids = input_ids.numpy()[mask]
        self._kept = self.kept_of_id[self._ids]
        self._rows = np.nonzero(mask)[0]  # each row of the batch is one window
        self._values = np.empty((int(mask.sum()), self.n_layers * self.width), dtype=np.float32)

    def observe(self, layer: int, activations: torch.Tensor) -> None:
        assert self._valid is not None and self._values is not None
        self._values[:, layer * self.width : (layer + 1) * self.width] = activations[self._valid].float().cpu().numpy()
        if layer == self.n_layers - 1:
            self._finish_batch()

    def _finish_batch(self) -> None:
        assert self._values is not None and self._kept is not None and self._rows is not None
        units = self.units
        neurons = self._values  # [T, N]
        z = ((neurons - units.neuron_mean) / units.neuron_std).T  # [N, T]
        real = np.concatenate([neurons, cluster_activations(units, z).T], axis=1)  # [T, U]
        simulated = self.table[self._kept]  # [T, U]
        shuffled = simulated[:, self.permutation]
        starts = np.flatnonzero(np.r_[True, self._rows[1:] != self._rows[:-1]])
        for begin, end in zip(starts, [*starts[1:], len(self._rows)]):
            s, a, p = simulated[begin:end].astype(np.float64), real[begin:end].astype(np.float64), shuffled[begin:end]
            self.sums.windows.append(np.stack([s.sum(0), (s * s).sum(0), a.sum(0), (a * a).sum(0),
                                               (s * a).sum(0)]).astype(np.float32))
            p = p.astype(np.float64)
            self.sums.shuffled.append(np.stack([p.sum(0), (p * p).sum(0), (p * a).sum(0)]).astype(np.float32))
            self.sums.peaks.append(real[begin:end].max(axis=0))
            self.sums.counts.append(end - begin)
            self.sums.token_ids.append(self._ids[begin:end].astype(np.int32))
            self.sums.peak_at.append(real[begin:end].argmax(axis=0).astype(np.int16))
        self.tokens += len(self._rows)
        self._values = None


@dataclass
class SimulationScores:
    """Each unit's scores (NaN: undefined)."""

    all_at_once: np.ndarray
    top_and_random: np.ndarray
    shuffled: np.ndarray
    """The calibration: the all-at-once score of another unit's explanation."""


def scores_from_sums(sums: SimulationSums, top_windows: int, random_windows: int, seed: int) -> SimulationScores:
    """The three scores of every unit from its per-window sums."""
    moments = np.stack(sums.windows).astype(np.float64)  # [W, 5, U]
    counts = np.asarray(sums.counts, dtype=np.float64)
    total = moments.sum(axis=0)
    all_at_once = correlation(counts.sum(), *total)
    shuffled_total = np.stack(sums.shuffled).astype(np.float64).sum(axis=0)
    s, ss, sa = shuffled_total
    shuffled = correlation(counts.sum(), s, ss, total[2], total[3], sa)
    peaks = np.stack(sums.peaks)  # [W, U]
    w = peaks.shape[0]
    top = min(top_windows, w)
    chosen = np.argpartition(-peaks, top - 1, axis=0)[:top] if top < w else np.broadcast_to(np.arange(w)[:, None], (w, peaks.shape[1]))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, w, size=(random_windows, peaks.shape[1]))
    picked = np.concatenate([chosen, drawn])  # [top + random, U]
    columns = np.arange(peaks.shape[1])[None, :]
    sample = moments[picked, :, columns].sum(axis=0)  # [P, U, 5] (the indexed axes come first) -> [U, 5]
    top_and_random = correlation(counts[picked].sum(axis=0), *sample.T)
    return SimulationScores(all_at_once, top_and_random, shuffled)


def group_permutation(groups: list[str], seed: int) -> np.ndarray:
    """A permutation that sends every unit to another unit of its group (a derangement within each group)."""
    rng = np.random.default_rng(seed)
    out = np.arange(len(groups))
    labels = np.asarray(groups)
    for group in dict.fromkeys(groups):
        members = np.flatnonzero(labels == group)
        if len(members) < 2:
            continue
        shift = rng.permutation(len(members))
        order = members[shift]
        out[order] = np.roll(order, 1)  # a cycle through a random order: nobody keeps its own
    return out


def summary(values: np.ndarray) -> dict[str, Any]:
    """Median, quartiles and the share >= 0.5 of the defined values."""
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return {"units": int(values.size), "defined": 0}
    q1, median, q3 = (float(x) for x in np.percentile(defined, [25, 50, 75]))
    return {"units": int(values.size), "defined": int(defined.size), "median": round(median, 4),
            "q1": round(q1, 4), "q3": round(q3, 4), "share_at_least_0.5": round(float((defined >= 0.5).mean()), 4)}


def rounded(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 4)
