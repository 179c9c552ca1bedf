"""Every node of the complete-linkage tree as a searchable cluster (``find``'s default clusters).

The paper cuts one tree at a fixed K; measured on this project's concept files, the best cluster
of the K = 200 cut names a concept about half as precisely as the best single neuron, because a
cut of ~46 neurons per cluster mixes topics in its mean profile, while the tree's nodes of 3-10
neurons are as precise as the best neuron (docs/results/retrieval.md). So the search stage keeps every
internal node of the tree -- the clusters of every cut at once -- with its mean-profile top
tokens, and ``find`` picks, per query, the node whose top tokens best match it: K chosen by the
query. Node ``j`` is the ``j``-th merge of the linkage matrix (scipy's row order); its neurons
are the leaves below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TreeNodes:
    """The internal nodes of a linkage tree over N neurons (T = N - 1 nodes)."""

    children: np.ndarray
    """int32 [T, 2]: a child below N is a neuron, else node ``child - N``."""
    sizes: np.ndarray
    """int32 [T]: neurons below each node."""
    top_tokens: np.ndarray
    """int32 [T, M]: top tokens of each node's mean unit profile, best first."""
    top_weights: np.ndarray
    """float32 [T, M]: those mean-profile values."""
    distances: np.ndarray
    """float32 [T, 2]: mean and max pairwise cosine distance of the node's neurons (the max is
    the complete-linkage merge height)."""


def tree_nodes(unit: np.ndarray, z: np.ndarray, top: int) -> TreeNodes:
    """The nodes of tree ``z`` over the unit profile rows ``unit`` [N, Vk], with ``top`` tokens each.

    Node sums are built bottom-up (a merge adds its children's sums), so every node costs one
    vector addition and one partial sort; only the sums of not-yet-merged nodes are held.
    """
    n = unit.shape[0]
    count = max(n - 1, 0)
    top = min(top, unit.shape[1])
    children = z[:, :2].astype(np.int32)
    sizes = np.zeros(count, dtype=np.int32)
    top_tokens = np.zeros((count, top), dtype=np.int32)
    top_weights = np.zeros((count, top), dtype=np.float32)
    distances = np.zeros((count, 2), dtype=np.float32)
    sums: dict[int, np.ndarray] = {}
    squares = np.zeros(n + count, dtype=np.float64)  # sum of |u|^2 below a node (1 per non-empty row)
    squares[:n] = np.einsum("ij,ij->i", unit, unit, dtype=np.float64)
    size_of = np.ones(n + count, dtype=np.int64)

    def take(node: int) -> np.ndarray:
        return sums.pop(node) if node >= n else unit[node].astype(np.float64)

    for j in range(count):
        a, b = int(children[j, 0]), int(children[j, 1])
        total = take(a) + take(b)
        node = n + j
        sums[node] = total
        size_of[node] = size_of[a] + size_of[b]
        squares[node] = squares[a] + squares[b]
        m = int(size_of[node])
        mean = total / m
        best = np.argpartition(-mean, top - 1)[:top]
        best = best[np.lexsort((best, -mean[best]))]
        top_tokens[j], top_weights[j], sizes[j] = best, mean[best], m
        mean_cos = (float(total @ total) - squares[node]) / (m * (m - 1))
        distances[j] = (1.0 - mean_cos, z[j, 2])
    return TreeNodes(children, sizes, top_tokens, top_weights, distances)
