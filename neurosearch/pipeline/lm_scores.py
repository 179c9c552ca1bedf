"""The search stage's language-model membership scores: every concept key scored once at build time
(``lm/membership.py``), so that ``find`` reads stored expansions without torch or the model.

Which model: ``ExpansionConfig.language_model`` (:func:`resolve_spec`). Scores are kept block by
block in ``<index>/lm-scores/`` (a build intermediate, not shipped) beside a ``meta.json`` naming
the model, the prompt, the keys and the kept tokens they were computed for: a stopped build resumes
at the first missing block, and a build with other coefficients reuses every block without loading
the model. Anything else in the folder (another model, other keys) is discarded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.index.semantic import LMScores
from neurosearch.progress import Reporter


def resolve_spec(setting: str) -> str | None:
    """The language model spec an ``ExpansionConfig.language_model`` setting names: None for
    ``none``, and for ``auto`` when the ``lm`` extra (the default model) is not installed."""
    value = setting.strip()
    if value.lower() == "none":
        return None
    if value.lower() == "auto":
        import importlib.util

        from neurosearch.lm.files import GEMMA_PACKAGE

        return "local" if importlib.util.find_spec(GEMMA_PACKAGE) is not None else None
    return value


def _digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]


@dataclass
class MembershipBlocks:
    """``(start, keys) -> LMScores`` for ``build_expansions``: blocks read from ``folder`` when an
    earlier run kept them, else scored with the model (loaded on first need) and kept."""

    folder: Path
    spec: str
    keys: list[str]
    kept_tokens: list[str]
    reporter: Reporter
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    _identity: str = ""
    _scorer: Any = None
    _meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from neurosearch.lm import identify
        from neurosearch.lm.membership import PROMPT, is_word

        self._identity = identify(self.spec).key  # refuses a missing file or a wrong sha256 before any work
        self._words = np.asarray([is_word(t) for t in self.kept_tokens], dtype=bool)
        wanted = {"model": self._identity, "prompt": PROMPT, "keys": _digest(self.keys),
                  "kept_tokens": _digest(self.kept_tokens)}
        meta_path = self.folder / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if not isinstance(meta, dict) or {k: meta.get(k) for k in wanted} != wanted:
            shutil.rmtree(self.folder, ignore_errors=True)
            meta = dict(wanted)
        self._meta = meta

    @property
    def identity(self) -> str:
        return self._identity

    def _block(self, start: int) -> Path:
        return self.folder / f"block-{start:08d}.npy"

    def _fixed(self) -> tuple[np.ndarray, np.ndarray]:
        """(partial, baseline) of ``LMScores``: computed once with the model, then kept in meta.json."""
        if "partial" not in self._meta or "baseline" not in self._meta:
            scorer = self._load()
            self._meta["partial"] = np.flatnonzero(scorer.partial).tolist()
            self._meta["baseline"] = [float(v) for v in scorer.baseline.astype(np.float16)]
            write_json_atomic(self.folder / "meta.json", self._meta)
        partial = np.zeros(len(self.kept_tokens), dtype=bool)
        partial[np.asarray(self._meta["partial"], dtype=np.int64)] = True
        return partial, np.asarray(self._meta["baseline"], dtype=np.float32)

    def _load(self) -> Any:
        if self._scorer is None:
            from neurosearch.lm import load_language_model
            from neurosearch.lm.membership import MembershipScorer

            started = time.time()
            self.reporter.log(f"search: loading the language model for membership scores ({self._identity}) ...")
            lm = load_language_model(self.spec, reporter=self.reporter)
            if lm.identity.key != self._identity:
                from neurosearch.errors import NeurosearchError

                raise NeurosearchError(f"language model {self.spec}: loaded {lm.identity.key}, expected {self._identity}")
            self._scorer = MembershipScorer(lm, self.kept_tokens)
            self.reporter.log(f"search: language model loaded in {time.time() - started:.1f} s")
        return self._scorer

    def __call__(self, start: int, keys: list[str]) -> LMScores:
        path = self._block(start)
        scores = None
        if path.is_file():
            try:
                scores = np.load(path)
            except (OSError, ValueError):
                scores = None
            if scores is not None and scores.shape != (len(keys), len(self.kept_tokens)):
                scores = None
        if scores is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.folder / "meta.json", self._meta)
            started = time.time()
            scores = self._load().scores(keys).astype(np.float16)
            seconds = time.time() - started
            self.seconds += seconds
            save_npy_atomic(path, scores)
            self.computed += len(keys)
            self._meta["seconds"] = round(float(self._meta.get("seconds", 0.0)) + seconds, 1)
            write_json_atomic(self.folder / "meta.json", self._meta)
        else:
            self.reused += len(keys)
        partial, baseline = self._fixed()
        return LMScores(scores.astype(np.float32), partial, self._words, baseline, self.kept_tokens)

    def record(self) -> dict[str, Any]:
        """What the expansions record of the model: its spec and identity, the keys scored now and
        kept from an earlier run, the seconds of this run's scoring and of every block's."""
        total = float(self._meta.get("seconds", self.seconds))
        return {"spec": self.spec, "identity": self._identity, "keys_scored": self.computed,
                "keys_reused": self.reused, "seconds": round(self.seconds, 1),
                "seconds_all_blocks": round(total, 1),
                "seconds_per_key": round(total / (self.computed + self.reused), 4) if self.computed + self.reused else None}


def scores_folder(out: Path) -> Path:
    """Where a build keeps its membership score blocks."""
    return out / layout.LM_SCORES_DIR
