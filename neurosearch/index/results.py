"""What queries return: typed results (the JSON contracts of ``find --json`` and ``show cluster``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from neurosearch.ids import ClusterId

if TYPE_CHECKING:
    from neurosearch.index.query import ExpandedQuery


@dataclass
class Result:
    """One hit of ``find``: the JSON contract of ``neurosearch find --json``."""

    kind: str
    """``cluster`` or ``neuron``."""
    id: str
    """``METHOD/kK/ID`` (``METHOD/tree/ID`` for a node of the cluster tree) for a cluster, ``L:I`` for a neuron."""
    score: float
    """Expected precision: the expected share of the hit's first 10 top tokens that belong to the concept."""
    label: str | None
    label_source: str | None
    """``llm`` or ``fallback``."""
    top_tokens: list[str]
    size: int
    """Neurons in the hit (1 for a neuron)."""
    neurons: list[str]
    simulation_score: float | None = None
    """How well its top tokens predict its activations on held-out text (``neurosearch score``; None: not scored)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "score": round(float(self.score), 5),
            "label": self.label,
            "label_source": self.label_source,
            "top_tokens": self.top_tokens,
            "size": self.size,
            "neurons": self.neurons,
            "simulation_score": self.simulation_score,
        }


@dataclass
class FindResult:
    """What ``find`` returns: the expanded query and the hits, best first."""

    query: ExpandedQuery
    results: list[Result]
    notes: list[str] = field(default_factory=list)
    hidden: int = 0
    """Hits left out for scoring below ``SearchConfig.min_score`` (``find --all`` lists them)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query.text,
            "concept": self.query.key,
            "expanded_tokens": self.query.to_json(),
            "results": [r.to_json() for r in self.results],
            "notes": self.notes,
            "hidden_below_min_score": self.hidden,
        }


@dataclass
class ClusterInfo:
    """One cluster of one method and K (K = 0: a node of the cluster tree), with everything ``show cluster`` prints."""

    method: str
    k: int
    id: int
    neurons: list[str]
    dropped: list[str]
    """Members that refinement removed (farther than the threshold from the centre)."""
    top_tokens: list[str]
    top_weights: list[float]
    layer_sizes: dict[int, int]
    avg_distance: float
    max_distance: float
    label: dict[str, Any] | None

    @property
    def key(self) -> str:
        """``METHOD/kK/ID`` (``METHOD/tree/ID``)."""
        return str(ClusterId(self.method, self.k, self.id))


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

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
