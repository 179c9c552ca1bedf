"""The detection score: does a language model, told a unit's theme, tell its strongest windows
from random ones?

For a sample of units of each group (neurons, the clusters of each K cut, tree nodes), the held-out
windows of the simulation pass are split into the unit's ``top`` strongest (by its largest
activation in the window) and ``random`` others drawn at random; each window is quoted as the
``excerpt`` word pieces around the unit's largest activation in it (the same rule for both kinds,
so position gives nothing away). The language model (``neurosearch.lm``: the local Gemma by
default, or any server) scores every window under one of two rules (``DetectionConfig.rule``):

* ``surprisal`` (default): how much likelier the theme makes the window, log P(text | "A text
  about THEME:") - log P(text | "A text:") (delphi's surprisal scorer, applied to detection);
* ``yes-no``: log P(" Yes") - log P(" No") after a one-shot "Does the text match the theme?".

The unit's score is the AUC of its strongest windows against the random ones (0.5: chance). The
calibration asks the same of the same windows with the theme of another unit of the group: those
AUCs sit near 0.5. Why surprisal is the default: on a tuning sample of units (seed 1, not the
sample the docs report) the yes-no rule with Gemma 3 270M was at chance (docs/results/scores.md).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from neurosearch.scores.config import DetectionConfig
from neurosearch.scores.simulation import SimulationSums, group_permutation, rounded, summary
from neurosearch.scores.units import UnitSet

if TYPE_CHECKING:
    from neurosearch.lm.base import LanguageModel
    from neurosearch.progress import Reporter

PROMPT = ("Theme: days of the week\nText: the shop is open from monday to saturday\n"
          "Does the text match the theme? Yes\n\n"
          "Theme: {theme}\nText: {text}\nDoes the text match the theme?")
"""The ``yes-no`` rule: one shot (a made-up example, not from any corpus), then the unit's theme
and one window."""
ANSWERS = (" Yes", " No")
THEMED = "A text about {theme}:"
NEUTRAL = "A text:"
"""The ``surprisal`` rule: the window is scored as the continuation of each (after one space)."""


def prompt_version(rule: str = "surprisal") -> str:
    """A short hash of the rule's prompts (part of what a stored detection score is about)."""
    text = PROMPT + "|".join(ANSWERS) if rule == "yes-no" else f"{THEMED}|{NEUTRAL}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def auc(positives: list[float], negatives: list[float]) -> float:
    """The probability that a positive outscores a negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def sample_units(units: UnitSet, per_group: int, seed: int) -> list[int]:
    """Up to ``per_group`` units of each group, drawn at random (in unit order)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for group in dict.fromkeys(units.groups):
        rows = units.group_indices(group)
        chosen += sorted(rng.choice(rows, size=min(per_group, len(rows)), replace=False).tolist())
    return chosen


def detection_scores(units: UnitSet, sums: SimulationSums, themes: Callable[[int], str], lm: LanguageModel,
                     decode: Callable[[np.ndarray], str], config: DetectionConfig | None = None, *,
                     done: dict[str, list[float | None]] | None = None,
                     on_unit: Callable[[str, list[float | None], str], None] | None = None,
                     reporter: Reporter | None = None) -> dict[str, list[float | None]]:
    """[AUC, calibration AUC] of a sample of units by store key. ``themes(i)`` is unit ``i``'s theme,
    ``decode(ids)`` turns word-piece ids into text; units already in ``done`` are not asked again,
    and ``on_unit`` gets each new result as it comes, with the theme asked (a caller keeps them: a
    stopped run resumes)."""
    from neurosearch.progress import SilentReporter

    config = config or DetectionConfig()
    reporter = reporter or SilentReporter()
    done = dict(done or {})
    peaks = np.stack(sums.peaks)  # [W, U]
    rng = np.random.default_rng(config.seed)
    other = group_permutation(units.groups, config.seed + 1)
    chosen = sample_units(units, config.units, config.seed)
    advance = reporter.task("detection (units)", len(chosen))
    for unit in chosen:
        key = units.keys[unit]
        strongest = np.argsort(-peaks[:, unit], kind="stable")[: config.top]
        rest = np.setdiff1d(np.arange(peaks.shape[0]), strongest)
        drawn = rng.choice(rest, size=min(config.random, len(rest)), replace=False)  # drawn even when cached
        if key in done:
            advance(1)
            continue
        texts = [_excerpt(sums, int(w), unit, config.excerpt, decode) for w in (*strongest, *drawn)]
        asked = [themes(unit), themes(int(other[unit]))]
        answers = (_answers(lm, [PROMPT.format(theme=theme, text=text) for theme in asked for text in texts])
                   if config.rule == "yes-no" else _surprisal(lm, asked, texts))
        result = []
        for number in range(len(asked)):
            scores = answers[number * len(texts):(number + 1) * len(texts)]
            result.append(rounded(auc(scores[: len(strongest)], scores[len(strongest):])))
        done[key] = result
        if on_unit is not None:
            on_unit(key, result, asked[0])
        advance(1)
    reporter.finish("detection (units)")
    return done


def _excerpt(sums: SimulationSums, window: int, unit: int, width: int, decode: Callable[[np.ndarray], str]) -> str:
    ids = sums.token_ids[window]
    at = int(sums.peak_at[window][unit])
    start = max(0, min(at - width // 2, len(ids) - width))
    return " ".join(decode(ids[start : start + width]).split())


def _answers(lm: LanguageModel, prompts: list[str]) -> list[float]:
    """log P(" Yes") - log P(" No") after each prompt (one batch)."""
    return [yes.logprob - no.logprob for yes, no in lm.next_token_logprobs_many(prompts, ANSWERS)]


def _surprisal(lm: LanguageModel, themes: list[str], texts: list[str]) -> list[float]:
    """log P(text | THEMED) - log P(text | NEUTRAL) of every text, for each theme in turn."""
    continuations = [" " + text for text in texts]
    neutral = [s.logprob for s in lm.continuation_logprobs(NEUTRAL, continuations)]
    gains: list[float] = []
    for theme in themes:
        themed = lm.continuation_logprobs(THEMED.format(theme=theme), continuations)
        gains += [s.logprob - base for s, base in zip(themed, neutral)]
    return gains


def detection_summary(units: UnitSet, scored: dict[str, list[float | None]]) -> dict[str, Any]:
    """Per group: the distribution of the detection AUC and of its calibration."""
    out = {}
    for group in dict.fromkeys(units.groups):
        keys = [units.keys[i] for i in units.group_indices(group) if units.keys[i] in scored]
        values = np.array([[np.nan if v is None else v for v in scored[k]] for k in keys]).reshape(-1, 2)
        out[group] = {"detection_auc": summary(values[:, 0]), "calibration_other_theme": summary(values[:, 1])}
        for name, column in (("detection_auc", 0), ("calibration_other_theme", 1)):
            defined = values[:, column][np.isfinite(values[:, column])]
            out[group][name]["mean"] = round(float(defined.mean()), 4) if defined.size else None
    return out


def about(config: DetectionConfig, lm: LanguageModel, started: float) -> dict[str, Any]:
    scored = ("log P(Yes) - log P(No)" if config.rule == "yes-no"
              else f"log P(text | '{THEMED}') - log P(text | '{NEUTRAL}')")
    return {"lm": lm.identity.key, "prompt": prompt_version(config.rule), "config": asdict(config),
            "seconds": round(time.time() - started, 1),
            "score": f"AUC of {scored} on the unit's strongest windows against random ones",
            "calibration": "the same windows asked with the theme of another unit of the group"}
