"""What queries return: typed results (the JSON contracts of ``find --json`` and ``show cluster``)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    detection_auc: float | None = None
    """How well a language model told its theme picks its strongest held-out windows (``score --detection``,
    a sample of units; None: not in it)."""

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
            "detection_auc": self.detection_auc,
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
