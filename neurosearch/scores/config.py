"""How units are scored (no numpy: the CLI reads its defaults at start-up)."""

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
