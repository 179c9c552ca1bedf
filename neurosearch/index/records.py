"""What ``show neuron`` and ``info`` return: typed records (their JSON contracts).

Apart from ``results.py`` so that ``find``, which needs none of them, does not pay for defining them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Activation:
    """One of a neuron's strongest stored activations: where it occurred and its value."""

    document: int
    position: int
    """Word piece within the document's tokenised text."""
    token_id: int
    value: float

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document, "position": self.position, "token_id": self.token_id, "value": self.value}


@dataclass
class Occurrence(Activation):
    """One of a cluster's strongest occurrences: a member neuron's activation and its z-score."""

    z: float = 0.0
    neuron: str = ""
    """The member neuron (``L:I``) whose activation it is."""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "z": self.z, "neuron": self.neuron}


@dataclass
class NeuronInfo:
    """One neuron with everything ``show neuron`` prints (the JSON contract of ``show neuron --json``)."""

    id: str
    """``L:I``."""
    method: str
    label: str | None
    label_source: str | None
    top_tokens: list[str]
    top_weights: list[float]
    mean: float
    """Mean activation over the corpus."""
    std: float
    top_activations: list[Activation]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "label": self.label, "label_source": self.label_source,
                "top_tokens": self.top_tokens, "top_weights": self.top_weights, "mean": self.mean, "std": self.std,
                "top_activations": [a.to_json() for a in self.top_activations]}


@dataclass
class IndexInfo:
    """What an index holds (the JSON contract of ``info --json``)."""

    path: str
    format_version: int
    neurosearch_version: str | None
    model: dict[str, Any]
    site: str
    layers: int
    neurons_per_layer: int
    neurons: int
    corpus: dict[str, Any]
    tokens_kept: int
    min_count: int | None
    methods: list[str]
    search_method: str
    ks: list[int]
    stages: dict[str, dict[str, Any]]
    """Each stage's facts from the manifest (its identity left out)."""
    labels: int
    """Stored LLM labels."""
    mlm_head: str
    """``model`` (the model's own), ``fitted`` or ``none``."""
    head_path: str | None
    results: dict[str, Any]
    """Where results about the index are read and written (``IndexState.describe``)."""
    refined: bool
    concepts: dict[str, Any] | None
    """The WordNet concept table: its source and number of concepts, None without one."""
    units: dict[str, Any] = field(default_factory=dict)
    """What the units are: empty for neurons; for SAE features the manifest's ``units`` without its
    cfg.json (kind, layer, site, d_sae, k, the SAE's path and file hashes, and its training's
    ``fvu``, ``dead_share`` and ``train_seconds`` when recorded)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
