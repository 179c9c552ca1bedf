"""Clusters and neurons by id: what ``find`` reports of a hit and ``show`` of one cluster or neuron,
with their labels.

A hit of ``find`` is assembled from the search stage's arrays (standard library); ``show`` reads a
cluster from its method's clusters JSON and a neuron's statistics with numpy. A label is the LLM
theme of ``labels.json`` when one is stored, else the offline label the build stored for every
neuron and cluster (``search/<method>/fallback_labels.txt``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING

from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.files import IndexFiles
from neurosearch.ids import ClusterId, store_key
from neurosearch.index.results import ClusterInfo, Result
from neurosearch.index.unit_scores import UnitScores
from neurosearch.index.scoring import Scoring
from neurosearch.index.vocabulary import Vocabulary

if TYPE_CHECKING:
    import numpy as np

    from neurosearch.format.clusters import Cluster
    from neurosearch.format.state import IndexState
    from neurosearch.index.records import NeuronInfo, Occurrence
    from neurosearch.index.labels import Label


class IndexLabels:
    """The labels of one index's neurons and clusters."""

    def __init__(self, files: IndexFiles, state: Callable[[], IndexState]):
        self.files = files
        self._state = state  # where results about the index are (computed when first needed)

    @cached_property
    def stored(self) -> dict[str, Label]:
        """The stored LLM labels (the index's, then the user's state folder's), by :func:`store_key`."""
        from neurosearch.index.stored import stored_labels

        return stored_labels(self._state())

    def label_for(self, kind: str, key: str, method: str, row: int) -> tuple[str, str]:
        """(theme, source) of ``row`` of ``method``'s neurons or clusters (``key`` names it in
        labels.json): the LLM theme when stored, else the offline label the build made of its top
        tokens (``fallback_label``)."""
        stored = self.stored.get(store_key(kind, key))
        if stored is not None:
            return stored.theme, stored.source
        offset = 0 if kind == "neuron" else self.files.manifest.n_neurons  # neurons first, then clusters
        return self.files.lines(layout.fallback_labels_file(method))[offset + row], "fallback"

    def stored_label(self, kind: str, key: str) -> Label | None:
        """The stored LLM label of one item, if there is one."""
        return self.stored.get(store_key(kind, key))

    @cached_property
    def has_cluster_labels(self) -> bool:
        """Whether any cluster has a stored label (else a tree node has no cut cluster's to take)."""
        return any(key.startswith("cluster:") for key in self.stored)

    def explanation(self, kind: str, key: str) -> str | None:
        """The stored LLM label's explanation, if there is one."""
        stored = self.stored.get(store_key(kind, key))
        return stored.explanation if stored else None


class Lookup:
    """The clusters and neurons of one index, as reports."""

    def __init__(self, files: IndexFiles, vocabulary: Vocabulary, scoring: Scoring, labels: IndexLabels,
                 scores: UnitScores | None = None):
        self.scores = scores
        self.files = files
        self.manifest = files.manifest
        self.vocabulary = vocabulary
        self.scoring = scoring
        self.labels = labels
        self._cuts: dict[str, dict[tuple[int, ...], str]] = {}

    # -- hits of find ------------------------------------------------------------------------------
    def cluster_hit(self, method: str, row: int, score: float) -> Result:
        """Cluster ``row`` of ``method``'s scored clusters as ``find`` reports it (no clusters JSON)."""
        ident = ClusterId.of_row(method, self.scoring.cluster_key(method, row))
        key = str(ident)
        if ident.k == 0:  # a node of the tree: its neurons are the leaves below it
            members = self.tree_neurons(method, ident.number)
        else:
            offsets = self.files.table(layout.cluster_neurons_offsets_file(method))
            members = self.files.table(layout.cluster_neurons_file(method))[offsets[row] : offsets[row + 1]]
        neurons = [self.manifest.neuron_name(n) for n in members]
        top = self.files.table(layout.cluster_tokens_file(method)).row(row)[: layout.FIND_TOP_TOKENS]
        if ident.k == 0:
            theme, source, _ = self.tree_label(method, ident.number, members, row)
        else:
            theme, source = self.labels.label_for("cluster", key, method, row)
        return Result("cluster", key, score, theme, source, self.vocabulary.tokens_of(top), len(neurons), neurons,
                      self.scores.at_row("clusters", method, row) if self.scores else None,
                      self.scores.detection_auc("cluster", key) if self.scores else None)

    def neuron_hit(self, method: str, flat: int, score: float) -> Result:
        """Neuron ``flat`` as ``find`` reports it."""
        name = self.manifest.neuron_name(flat)
        top = self.files.table(layout.neuron_top_tokens(method)).row(flat)[: layout.FIND_TOP_TOKENS]
        theme, source = self.labels.label_for("neuron", name, method, flat)
        return Result("neuron", name, score, theme, source, self.vocabulary.tokens_of(top), 1, [name],
                      self.scores.at_row("neurons", method, flat) if self.scores else None,
                      self.scores.detection_auc("neuron", name) if self.scores else None)

    # -- clusters ----------------------------------------------------------------------------------
    def parse_cluster_id(self, text: str) -> ClusterId:
        """``17`` (search method, default K), ``k50/17``, ``filter+tfidf/k200/17`` or ``tree/412``, completed."""
        return ClusterId.parse(text).complete(self.manifest.search_method, self.manifest.default_k)

    def clusters(self, method: str, k: int) -> list[Cluster]:
        """The clusters of ``method`` at K, in id order (the records of its clusters file)."""
        from neurosearch.format.clusters import Cluster

        self.manifest.check_method(method)
        self.manifest.check_k(k)
        return [Cluster.from_json(data) for data in self.files.json(layout.clusters_file(method, k))["clusters"]]

    def cluster(self, cluster_id: str) -> ClusterInfo:
        method, k, number = ident = self.parse_cluster_id(cluster_id)
        if k == 0:
            return self.tree_cluster(method, number)
        found = self.clusters(method, k)
        if not 0 <= number < len(found):
            raise NeurosearchError(f"cluster {cluster_id} does not exist: {method} K={k} has clusters 0..{len(found) - 1}")
        record = found[number]
        key = str(ident)
        theme, source = self.labels.label_for("cluster", key, method, self.scoring.cluster_row(method, ident.row_key))
        name = self.manifest.neuron_name
        return ClusterInfo(
            method=method,
            k=k,
            id=number,
            neurons=[name(n) for n in record.neurons],
            dropped=[name(n) for n in record.dropped],
            top_tokens=self.vocabulary.tokens_of(record.top_tokens),
            top_weights=record.top_weights,
            layer_sizes=record.layer_sizes,
            avg_distance=record.avg_distance,
            max_distance=record.max_distance,
            label={"theme": theme, "source": source, "explanation": self.labels.explanation("cluster", key)},
        )

    # -- the tree's nodes ---------------------------------------------------------------------------
    def tree_neurons(self, method: str, number: int) -> list[int]:
        """The neurons (flat indices) below node ``number`` of ``method``'s tree."""
        from neurosearch.index.tree import node_neurons

        return node_neurons(self.files.table(layout.tree_file(method, "children")).row, self.manifest.n_neurons, number)

    def tree_cluster(self, method: str, number: int) -> ClusterInfo:
        """Node ``number`` of ``method``'s cluster tree as a cluster (K = 0)."""
        self.manifest.check_method(method)
        if not self.scoring.has_tree(method):
            raise NeurosearchError(f"method '{method}' has no searchable cluster tree in this index (the search "
                                   f"method {self.manifest.search_method} has)")
        children = self.files.table(layout.tree_file(method, "children"))
        if not 0 <= number < children.shape[0]:
            raise NeurosearchError(f"cluster {layout.TREE}/{number} does not exist: the tree has nodes 0..{children.shape[0] - 1}")
        ident = ClusterId(method, 0, number)
        flat = self.tree_neurons(method, number)
        row = self.scoring.cluster_row(method, ident.row_key)
        tokens = self.files.table(layout.cluster_tokens_file(method)).row(row)
        weights = self.files.table(layout.tree_file(method, "top_weights")).row(number)
        mean, largest = self.files.table(layout.tree_file(method, "distances")).row(number)
        layers: dict[int, int] = {}
        for n in flat:
            layer = n // self.manifest.neurons_per_layer
            layers[layer] = layers.get(layer, 0) + 1
        theme, source, explanation = self.tree_label(method, number, flat, row)
        name = self.manifest.neuron_name
        return ClusterInfo(method=method, k=0, id=number, neurons=[name(n) for n in flat], dropped=[],
                           top_tokens=self.vocabulary.tokens_of(tokens), top_weights=[float(w) for w in weights],
                           layer_sizes=layers, avg_distance=float(mean), max_distance=float(largest),
                           label={"theme": theme, "source": source, "explanation": explanation})

    def tree_label(self, method: str, number: int, flat: list[int], row: int) -> tuple[str, str, str | None]:
        """(theme, source, explanation) of tree node ``number`` (``flat``: its neurons; ``row``: its
        scored row): its own stored label (``label --ids tree/N``), else the stored label of the cut
        cluster with exactly its neurons (the same cluster: tree/8855 is k200/84), else the offline one."""
        key = str(ClusterId(method, 0, number))
        stored = self.labels.stored_label("cluster", key)
        if stored is None and self.labels.has_cluster_labels:  # only then are the cuts read
            same = self.cut_of_neurons(method, flat)
            stored = self.labels.stored_label("cluster", f"{method}/{same}") if same else None
        if stored is not None:
            return stored.theme, stored.source, stored.explanation
        theme, source = self.labels.label_for("cluster", key, method, row)
        return theme, source, None

    def same_cut_cluster(self, info: ClusterInfo) -> str | None:
        """The row key (``kK/ID``) of a cluster of a cut with exactly the neurons of tree node
        ``info``, if there is one (a cut's clusters are nodes of the tree: k200/84 is tree/8855)."""
        return self.cut_of_neurons(info.method, [self.manifest.neuron_index(name) for name in info.neurons])

    def cut_of_neurons(self, method: str, flat: list[int]) -> str | None:
        """The row key (``kK/ID``) of the cluster of a cut with exactly the
        neurons ``flat``, if there is one (the first of the index's K that has one)."""
        if method not in self._cuts:
            cuts: dict[tuple[int, ...], str] = {}
            for k in self.manifest.ks:
                for cluster in self.clusters(method, k):
                    cuts.setdefault(tuple(sorted(cluster.neurons)), ClusterId(None, k, cluster.id).row_key)
            self._cuts[method] = cuts
        return self._cuts[method].get(tuple(sorted(int(n) for n in flat)))

    def cluster_refs(self, info: ClusterInfo, limit: int) -> list[Occurrence]:
        """The cluster's strongest occurrences: its neurons' top activations, ranked by z-score."""
        import numpy as np

        from neurosearch.index.records import Occurrence

        refs = self.files.npy(layout.NEURON_TOP_REFS)
        values = self.files.npy(layout.NEURON_TOP_VALUES)
        mean = self.files.npy(layout.NEURON_MEAN)
        std = np.maximum(self.files.npy(layout.NEURON_STD), 1e-6)
        candidates: dict[tuple[int, int], Occurrence] = {}
        for name in info.neurons:
            flat = self.manifest.neuron_index(name)
            for (document, position, token_id), value in zip(refs[flat], values[flat]):
                if not np.isfinite(value):
                    continue
                z = float((value - mean[flat]) / std[flat])
                key = (int(document), int(position))
                if key not in candidates or candidates[key].z < z:
                    candidates[key] = Occurrence(key[0], key[1], int(token_id), float(value), z, name)
        return sorted(candidates.values(), key=lambda r: -r.z)[:limit]

    # -- neurons -----------------------------------------------------------------------------------
    def method_top(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """Every neuron's top tokens (kept-token indices) and their profile values under ``method``."""
        self.manifest.check_method(method)
        return self.files.npy(layout.neuron_top_tokens(method)), self.files.npy(layout.neuron_top_values(method))

    def neuron(self, name: str, method: str | None = None) -> NeuronInfo:
        """Everything ``show neuron`` prints of one neuron."""
        return self.neurons([name], method)[0]

    def neurons(self, names: Iterable[str], method: str | None = None) -> list[NeuronInfo]:
        """:meth:`neuron` of many neurons at once (each array is read once)."""
        import math

        from neurosearch.index.records import Activation, NeuronInfo

        method = method or self.manifest.search_method
        top_index, top_values = self.method_top(method)
        refs, values = self.files.npy(layout.NEURON_TOP_REFS), self.files.npy(layout.NEURON_TOP_VALUES)
        mean, std = self.files.npy(layout.NEURON_MEAN), self.files.npy(layout.NEURON_STD)
        found = []
        for name in names:
            flat = self.manifest.neuron_index(name)
            theme, source = self.labels.label_for("neuron", name, method, flat)
            found.append(NeuronInfo(
                id=self.manifest.neuron_name(flat),
                method=method,
                label=theme,
                label_source=source,
                top_tokens=self.vocabulary.tokens_of(top_index[flat].tolist()),
                top_weights=top_values[flat].tolist(),
                mean=float(mean[flat]),
                std=float(std[flat]),
                top_activations=[Activation(d, p, t, v) for (d, p, t), v in zip(refs[flat].tolist(), values[flat].tolist())
                                 if math.isfinite(v)],
            ))
        return found
