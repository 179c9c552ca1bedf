"""A model's own sentence embedding: the pooling its sentence-transformers config names.

Sentence encoders such as all-MiniLM-L6-v2 ship a ``modules.json`` (Transformer -> Pooling ->
optionally Normalize) and ``1_Pooling/config.json`` (``pooling_mode_mean_tokens`` etc.). The
embedding readout of causal verification measures how far ablating neurons moves *this* embedding,
so it reads the same configuration; a model without one gets mean pooling, unnormalised, and the
readout says so (``SentencePooling.source``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
_CONFIG_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


@dataclass(frozen=True)
class SentencePooling:
    """How token states become one sentence vector."""

    mode: str = "mean"
    """``mean`` over the attended tokens, ``cls`` (first token), ``max``, or ``mean_sqrt_len``."""
    normalize: bool = False
    """Scale each sentence vector to unit length (sentence-transformers' Normalize module)."""
    source: str = "default (no sentence-transformers config)"
    """Where the setting came from, for the readout's report."""

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode '{self.mode}' (choose from {', '.join(POOLING_MODES)})")

    def describe(self) -> str:
        return f"{self.mode} pooling{', normalised' if self.normalize else ''} ({self.source})"

    def __call__(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, seq, hidden] states and [batch, seq] mask -> [batch, hidden] float32 vectors."""
        hidden = hidden.float()
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        if self.mode == "cls":
            pooled = hidden[:, 0]
        elif self.mode == "max":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            summed = (hidden * mask).sum(dim=1)
            count = mask.sum(dim=1).clamp(min=1.0)
            pooled = summed / (count.sqrt() if self.mode == "mean_sqrt_len" else count)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


def read_pooling(model_dir: str | Path | None) -> SentencePooling | None:
    """The pooling a sentence-transformers model directory configures; None when it has none."""
    if model_dir is None:
        return None
    root = Path(model_dir)
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        pooling_dir = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
        if pooling_dir is None:
            return None
        config = json.loads((root / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    chosen = [mode for key, mode in _CONFIG_KEYS.items() if config.get(key)]
    if len(chosen) != 1:  # several modes concatenated (rare): not what the readout models
        return None
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    return SentencePooling(chosen[0], normalize, source=f"{root.name}/modules.json")


def model_directory(where: str) -> Path | None:
    """A local directory for a model given as a path or a hub id in the local cache (no network)."""
    path = Path(where).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(where, "modules.json")
    except Exception:  # no hub library, a malformed id: no sentence-transformers config then
        return None
    return Path(found).parent if isinstance(found, str) else None
