"""The record of one cluster in a clusters file (``methods/<method>/clusters_k<K>.json``,
``layout.clusters_file``): written by the build's clusters stage, read by ``Index.clusters``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cluster:
    """One neuron cluster at one K, as stored in ``clusters_k<K>.json``."""

    id: int
    neurons: list[int]
    """Flat neuron indices kept after refinement, ascending."""
    dropped: list[int] = field(default_factory=list)
    """Members removed by refinement (still in the tree's cluster, not in the concept)."""
    top_tokens: list[int] = field(default_factory=list)
    """Kept-token (profile column) indices, best first, from the kept members' mean profile."""
    top_weights: list[float] = field(default_factory=list)
    layer_sizes: dict[int, int] = field(default_factory=dict)
    """Kept neurons per layer."""
    avg_distance: float = 0.0
    """Mean pairwise cosine distance between kept members (0 for singletons)."""
    max_distance: float = 0.0
    """Max pairwise cosine distance between kept members (0 for singletons)."""

    @property
    def size(self) -> int:
        return len(self.neurons)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (layer keys become strings, as JSON requires)."""
        return {
            "id": int(self.id),
            "neurons": [int(i) for i in self.neurons],
            "dropped": [int(i) for i in self.dropped],
            "top_tokens": [int(i) for i in self.top_tokens],
            "top_weights": [float(w) for w in self.top_weights],
            "layer_sizes": {str(int(k)): int(v) for k, v in sorted(self.layer_sizes.items())},
            "avg_distance": float(self.avg_distance),
            "max_distance": float(self.max_distance),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cluster:
        """Inverse of ``to_json``."""
        return cls(
            id=int(data["id"]),
            neurons=[int(i) for i in data["neurons"]],
            dropped=[int(i) for i in data.get("dropped", [])],
            top_tokens=[int(i) for i in data.get("top_tokens", [])],
            top_weights=[float(w) for w in data.get("top_weights", [])],
            layer_sizes={int(k): int(v) for k, v in data.get("layer_sizes", {}).items()},
            avg_distance=float(data.get("avg_distance", 0.0)),
            max_distance=float(data.get("max_distance", 0.0)),
        )
