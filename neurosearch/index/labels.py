"""What a cluster or neuron is about: the label record, and the offline label made of its tokens.

Apart from the LLM labelling (``labeling/``) so that ``find`` can label its hits without importing
the labelling machinery; ``lookup.IndexLabels`` serves an index's labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Label:
    """A theme for one cluster or neuron, and what produced it."""

    theme: str
    explanation: str
    model: str
    """LLM that wrote it (as configured); empty for fallback labels."""
    prompt_hash: str
    """sha256 of prompt text + model: a label whose prompt or model changed is stale."""
    source: str
    """``llm`` or ``fallback``."""


def fallback_label(top_tokens: list[str], token_vectors: np.ndarray | None = None) -> Label:
    """Offline label from the 2-3 most central whole-word top tokens; deterministic, no network.

    ``token_vectors`` (one row per top token, any scale) picks the tokens with the highest mean
    cosine to the other candidates; without vectors the first candidates are used. Word-piece
    fragments (``##..``), punctuation and special tokens (``[UNK]``) are skipped.
    """
    if token_vectors is not None and len(token_vectors) != len(top_tokens):
        raise ValueError(
            f"token_vectors has {len(token_vectors)} rows for {len(top_tokens)} top tokens"
        )
    seen: set[str] = set()
    candidates: list[int] = []
    for index, token in enumerate(top_tokens):
        if not _is_word(token) or token.lower() in seen:
            continue
        seen.add(token.lower())
        candidates.append(index)
    if not candidates:  # nothing but fragments: show them rather than nothing
        candidates = [i for i, t in enumerate(top_tokens) if t.strip()][:3]
    chosen = candidates[:3]
    if token_vectors is not None and len(candidates) > 3:
        import numpy as np

        vectors = np.asarray(token_vectors, dtype=np.float64)[candidates]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms > 0, norms, 1.0)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, 0.0)
        centrality = similarity.sum(axis=1) / (len(candidates) - 1)
        order = np.argsort(-centrality, kind="stable")[:3]  # ties keep top-token order
        chosen = sorted(candidates[i] for i in order)  # shown in top-token order
    theme = " / ".join(top_tokens[i] for i in chosen) or "(no tokens)"
    return Label(
        theme=theme,
        explanation="Most central top tokens (no LLM label).",
        model="",
        prompt_hash="",
        source="fallback",
    )


def _is_word(token: str) -> bool:
    token = token.strip()
    if not token or token.startswith("##"):
        return False
    if token.startswith("[") and token.endswith("]"):
        return False
    return any(ch.isalnum() for ch in token)
