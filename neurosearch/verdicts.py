"""The verdict of an ablation: did the target beat every baseline? (pure: no numpy, no file format).

``rank_p`` is the empirical one-sided p of a value among a baseline's draws, ``verdict`` applies
today's rule (every baseline beaten: statistic above its mean, t prediction p and rank p below the
level). The experiments compute verdicts with it; the result format (``format/results.py``) stores
them and recomputes one for a legacy result, which is why this sits below both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


class Baseline(Protocol):
    """What a verdict reads of one baseline's comparison (``format.results.BaselineResult``)."""

    kind: str
    mean: float
    p: float
    p_empirical: float
    draws: list[float]


def number(value: Any) -> float:
    """A stored number (NaN for a missing or damaged one: records are read, never trusted)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value: float) -> float | None:
    """JSON has no NaN: store None; +-inf as a large number would lie, so None too."""
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class Verdict:
    """Whether the target beat every baseline at ``level``, and by how much."""

    passed: bool
    readout: str
    beats: list[str]
    """The baselines the target beat (statistic above their mean, t and rank p below the level)."""
    baselines: list[str]
    p: float
    """The largest t prediction p over the baselines."""
    p_empirical: float
    """The largest rank p over the baselines."""
    level: float
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The verdict in words: 'passed: beats 3/3 baselines, p <= 0.003 (rank p <= 0.048), embedding readout'."""
        head = "passed" if self.passed else "not passed"
        p = "p = ?" if not math.isfinite(self.p) else f"p ≤ {self.p:.2g}" if self.passed else f"p = {self.p:.2g}"
        rank = f"rank p {'≤' if self.passed else '='} {self.p_empirical:.2g}" if math.isfinite(self.p_empirical) else ""
        return (f"{head}: beats {len(self.beats)}/{len(self.baselines)} baselines, {p}"
                f"{f' ({rank})' if rank else ''}, {self.readout} readout, level {self.level:g}")

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "readout": self.readout, "beats": list(self.beats), "p": finite(self.p),
                "p_empirical": finite(self.p_empirical), "level": self.level, "baselines": list(self.baselines),
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Verdict":
        return cls(passed=bool(data["passed"]), readout=str(data["readout"]), beats=list(data.get("beats", [])),
                   baselines=list(data.get("baselines", [])), p=number(data.get("p")),
                   p_empirical=number(data.get("p_empirical")), level=float(data.get("level", 0.05)),
                   notes=list(data.get("notes", [])))


def rank_p(value: float, draws: Sequence[float]) -> float:
    """Empirical one-sided p: (1 + draws at or above ``value``) / (1 + draws)."""
    return (1 + sum(float(d) >= value for d in draws)) / (1 + len(draws))


def beaten(value: float, baseline: Baseline, level: float) -> bool:
    return value > baseline.mean and baseline.p < level and baseline.p_empirical < level


def verdict(readout: str, value: float, baselines: Sequence[Baseline], level: float) -> Verdict:
    """Passed when the target beats every baseline at ``level`` (t prediction and rank p both)."""
    beats = [b.kind for b in baselines if beaten(value, b, level)]
    notes = []
    fewest = min((len(b.draws) for b in baselines), default=0)
    if baselines and 1 / (fewest + 1) >= level:
        notes.append(f"{fewest} draws cannot pass at level {level:g}: the rank p of a value above every draw "
                     f"is 1/{fewest + 1}; use at least {math.floor(1 / level + 1e-9)} draws")
    ps = [b.p for b in baselines if math.isfinite(b.p)]
    return Verdict(
        passed=bool(baselines) and len(beats) == len(baselines),
        readout=readout,
        beats=beats,
        baselines=[b.kind for b in baselines],
        p=max(ps) if ps else math.nan,
        p_empirical=max((b.p_empirical for b in baselines), default=math.nan),
        level=level,
        notes=notes,
    )
