"""How units are scored: the simulation and detection configs (no numpy: the CLI reads their defaults at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreConfig:
    """How units are scored (every field is part of what a stored score is about)."""

    top_tokens: int = 20
    """Tokens of a unit's explanation (its top tokens, with their profile weights)."""
    max_tokens: int = 100_000
    """Counted tokens of held-out text read (windows in corpus order until this many)."""
    top_windows: int = 10
    """Top-and-random score: each unit's strongest windows ..."""
    random_windows: int = 10
    """... and this many windows drawn at random."""
    seed: int = 0
    """Seeds the random windows and the calibration's permutation."""
    batch_tokens: int = 4096

    def __post_init__(self) -> None:
        from neurosearch.config import check_int

        check_int("top_tokens", self.top_tokens, 1)
        check_int("max_tokens", self.max_tokens, 1)
        check_int("top_windows", self.top_windows, 1)
        check_int("random_windows", self.random_windows, 0)
        check_int("seed", self.seed, 0)
        check_int("batch_tokens", self.batch_tokens, 16)


DETECTION_RULES = ("surprisal", "yes-no")
"""How the detection score scores a window (``detection.py``)."""


@dataclass(frozen=True)
class DetectionConfig:
    """How many units and windows the detection score asks the language model about."""

    units: int = 200
    """Units drawn per group (all of a smaller group)."""
    top: int = 4
    """A unit's strongest windows scored ..."""
    random: int = 4
    """... against this many random ones (4 + 4: 16 pairs, an AUC in steps of 1/16)."""
    excerpt: int = 24
    """Word pieces quoted around the unit's largest activation in a window."""
    seed: int = 0
    rule: str = "surprisal"
    """How a window is scored: ``surprisal`` or ``yes-no`` (``detection.py`` says how)."""

    def __post_init__(self) -> None:
        from neurosearch.config import check_int
        from neurosearch.errors import ConfigError

        for name in ("units", "top", "random", "excerpt"):
            check_int(name, getattr(self, name), 1)
        check_int("seed", self.seed, 0)
        if self.rule not in DETECTION_RULES:
            raise ConfigError(f"unknown detection rule '{self.rule}' (choose from {', '.join(DETECTION_RULES)})",
                              option="rule")
