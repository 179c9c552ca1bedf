"""What a cluster or neuron is about: the label record, its store (``labels.json``), and the
offline label made of its tokens.

Apart from the LLM labelling (``labeling/``) so that ``find`` can label its hits without importing
the labelling machinery; ``lookup.IndexLabels`` serves an index's labels.

The store is read, written whole, and merged into one label at a time. ``labelling`` merges every
label it receives into the store under the store's lock (:func:`merge_label`, over
:func:`neurosearch.format.store.update_json`): the store is re-read, the one label set, and the
file replaced atomically, so two ``label`` runs on one index keep every label either received, and
a killed run keeps every label it had. A store that cannot be read is an error naming it, never
replaced. Standard library only (``find`` reads labels).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.errors import NeurosearchError
from neurosearch.format.atomic import write_bytes_atomic
from neurosearch.format.layout import LABELS_FORMAT

if TYPE_CHECKING:
    import numpy as np

KINDS = ("cluster", "neuron")
LABEL_FIELDS = ("theme", "explanation", "model", "prompt_hash", "source")


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


class LabelError(NeurosearchError):
    """A labelling problem the user must fix (no key, unreadable store)."""


def parse_store(data: Any) -> dict[str, Label]:
    """The labels of a parsed store; ``ValueError``/``TypeError`` naming what is wrong with its shape."""
    if not isinstance(data, dict) or "labels" not in data:
        raise ValueError("expected an object with 'version' and 'labels'")
    if data.get("version") != LABELS_FORMAT:
        raise ValueError(f"unsupported version {data.get('version')!r}")
    if not isinstance(data["labels"], dict):
        raise ValueError("'labels' is not an object")
    return {str(key): _label_from_dict(value) for key, value in data["labels"].items()}


def load_labels(path: str | os.PathLike[str]) -> dict[str, Label]:
    """Read a label store; a missing file is an empty store, a damaged one an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"cannot read label store {path}: {exc}") from None
    try:
        return parse_store(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise LabelError(
            f"label store {path} is corrupt ({exc}); move it away to relabel from scratch (it was left as it is)"
        ) from None


def _payload(labels: dict[str, Label]) -> dict[str, Any]:
    return {"version": LABELS_FORMAT, "labels": {key: asdict(labels[key]) for key in sorted(labels)}}


def save_labels(path: str | os.PathLike[str], labels: dict[str, Label]) -> None:
    """Write the whole store atomically: a crash leaves either the old or the new file, never half.

    This replaces what is there; :func:`merge_label` is the writer for runs that may overlap.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_payload(labels), indent=1, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def merge_label(path: str | os.PathLike[str], key: str, label: Label) -> dict[str, Label]:
    """Set one label in the store under its lock, keeping every other (also another run's); the store after."""
    from neurosearch.format.store import update_json

    merged: dict[str, Label] = {}

    def change(data: Any) -> dict[str, Any]:
        labels = {} if data is None else parse_store(data)
        labels[key] = label
        merged.update(labels)
        return _payload(labels)

    update_json(Path(path), change, default=None, check=_check_store, what="another `neurosearch label` run")
    return merged


def _check_store(data: Any) -> None:
    parse_store(data)


def _label_from_dict(value: Any) -> Label:
    if not isinstance(value, dict):
        raise ValueError("a label is not an object")
    missing = [name for name in LABEL_FIELDS if not isinstance(value.get(name), str)]
    if missing:
        raise ValueError(f"a label lacks string field(s) {', '.join(missing)}")
    return Label(**{name: value[name] for name in LABEL_FIELDS})


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
