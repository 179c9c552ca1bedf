"""Random baselines for an ablation, their statistics, and the verdict.

Baselines, each drawn ``draws`` times with the target's size: ``random`` (anywhere in the site),
``random_layer`` (the same count in each layer), ``random_position`` (the same layers, each
distinct index of the target mapped to a random other index, so neurons sharing an index across
layers still share one; the paper's code capped this at one neuron per layer, which we do not copy).

Draws are seeded by (``--seed``, the baseline kind, the target's neuron-set hash): two targets of
one size meet independent random sets, and rerunning one target reproduces its draws exactly.
Which neurons are drawn dominates the spread of a baseline (more sentences do not shrink it), so
the default is 20 draws per baseline.

A target *beats* a baseline when its statistic is above the draws' mean and both one-sided
p-values are below the level: the t prediction p (a new draw from the draws' normal distribution
reaching the target's value) and the empirical rank p, ``(1 + draws >= value) / (1 + draws)``.
The rank p needs no normality (a random target beats a baseline's draws with probability at most
the level), but it cannot go below ``1 / (draws + 1)``: at level 0.05 a verdict needs >= 20 draws.
The verdict passes when the target beats every baseline.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from neurosearch.config import BASELINES
from neurosearch.errors import NeurosearchError
from neurosearch.format.results import BaselineResult
from neurosearch.verdicts import rank_p, verdict


def draw_baseline(kind: str, neurons: Sequence[int], n_layers: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random neuron set with the target's size and the structure ``kind`` requires."""
    target = np.asarray(sorted(set(int(n) for n in neurons)), dtype=np.int64)
    if target.size == 0:
        return target
    if kind == "random":
        return np.sort(rng.choice(n_layers * width, size=target.size, replace=False))
    layers, indices = target // width, target % width
    if kind == "random_layer":
        drawn = [layer * width + rng.choice(width, size=count, replace=False)
                 for layer, count in zip(*np.unique(layers, return_counts=True))]
        return np.sort(np.concatenate(drawn))
    if kind == "random_position":
        distinct = np.unique(indices)
        pool = np.setdiff1d(np.arange(width), distinct)
        if pool.size >= distinct.size:
            mapped = rng.choice(pool, size=distinct.size, replace=False)
        else:  # the target uses most indices: any other index, still one-to-one
            mapped = distinct.copy()
            while np.any(mapped == distinct):
                mapped = rng.permutation(width)[: distinct.size]
        mapping = dict(zip(distinct.tolist(), mapped.tolist()))
        return np.sort(layers * width + np.array([mapping[i] for i in indices.tolist()], dtype=np.int64))
    raise NeurosearchError(f"unknown baseline '{kind}' (choose from {', '.join(BASELINES)})")


def draw_rng(identity: str, kind: str, seed: int) -> np.random.Generator:
    """The generator of one target's draws of one baseline kind (``identity``: its neuron-set hash)."""
    words = [int(identity[i : i + 8], 16) for i in range(0, min(len(identity), 32), 8)]
    kind_number = BASELINES.index(kind) if kind in BASELINES else len(BASELINES)
    return np.random.default_rng([int(seed), kind_number, *words])


def baseline_sets(neurons: Sequence[int], identity: str, kinds: Sequence[str], draws: int, seed: int,
                  n_layers: int, width: int) -> list[tuple[str, np.ndarray]]:
    """``draws`` random sets of each kind for one target, in kind order."""
    sets = []
    for kind in kinds:
        rng = draw_rng(identity, kind, seed)
        sets.extend((kind, draw_baseline(kind, neurons, n_layers, width, rng)) for _ in range(draws))
    return sets


def prediction_p(value: float, draws: Sequence[float]) -> float:
    """One-sided p that a new draw from the draws' normal distribution is >= value (t prediction)."""
    xs = np.asarray(draws, dtype=np.float64)
    n = xs.size
    if n < 2:
        return float("nan")
    sd = xs.std(ddof=1)
    if sd == 0:
        return 0.0 if value > xs.mean() else 1.0
    t = (value - xs.mean()) / (sd * math.sqrt(1 + 1 / n))
    from scipy import stats

    return float(stats.t.sf(t, df=n - 1))


def compare(kind: str, value: float, draws: Sequence[float]) -> BaselineResult:
    """The target's statistic against one baseline's draws."""
    xs = [float(d) for d in draws]
    mean = float(np.mean(xs)) if xs else math.nan
    sd = float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
    z = (value - mean) / sd if sd > 0 else (math.inf if value > mean else 0.0)
    return BaselineResult(kind=kind, mean=mean, std=sd, z=z, p=prediction_p(value, xs),
                          p_empirical=rank_p(value, xs), draws=xs)


__all__ = ["baseline_sets", "compare", "draw_baseline", "draw_rng", "prediction_p", "rank_p", "verdict"]
