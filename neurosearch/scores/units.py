"""The units an index scores, and their explanations as numbers.

The units are the search method's neurons, then its cluster rows in the search stage's order: the
clusters of every K cut, then the nodes of the cluster tree (``search/<method>/cluster_keys.json``).
A unit's *explanation*, for the token-lookup simulator, is what ``find`` and ``show`` list of it:
its first ``top_tokens`` top tokens with their profile weights. A cluster's activation at a token is
the mean of its neurons' z-scored activations (z against the corpus mean and sd of each neuron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neurosearch.format import layout
from neurosearch.ids import ClusterId, store_key

if TYPE_CHECKING:
    from neurosearch.index.index import Index

GROUPS = ("neurons", "tree")
"""Unit groups besides the K cuts (``k50``, ``k200``, ...): a score is reported per group."""


@dataclass
class UnitSet:
    """Every unit scored: neurons first, then cluster rows (K cuts, then tree nodes)."""

    method: str
    keys: list[str]
    """Store keys (``neuron:L:I``, ``cluster:METHOD/kK/ID``, ``cluster:METHOD/tree/ID``)."""
    groups: list[str]
    """``neurons``, ``k<K>`` or ``tree`` of each unit."""
    n_neurons: int
    top_tokens: np.ndarray
    """[U, n] int32 kept-token indices of each unit's explanation (-1: none)."""
    top_weights: np.ndarray
    """[U, n] float32 their weights."""
    cut_members: list[np.ndarray]
    """Flat neuron indices of each K-cut cluster row, in row order."""
    tree_children: np.ndarray | None
    """[N-1, 2] the tree's merges (below N a neuron, else node ``child - N``), None without a tree."""
    neuron_mean: np.ndarray
    neuron_std: np.ndarray

    @property
    def size(self) -> int:
        return len(self.keys)

    def group_indices(self, group: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.groups) == group)


def index_units(index: Index, top_tokens: int = 20, method: str | None = None) -> UnitSet:
    """The units of ``index`` (its search method unless ``method``) with ``top_tokens``-token explanations."""
    method = index.manifest.check_method(method or index.search_method)
    files = index.files
    n = index.manifest.n_neurons
    neuron_tokens = np.asarray(files.npy(layout.neuron_top_tokens(method)))[:, :top_tokens]
    neuron_weights = np.asarray(files.npy(layout.neuron_top_values(method)), dtype=np.float32)[:, :top_tokens]
    keys = [store_key("neuron", index.neuron_name(flat)) for flat in range(n)]
    groups = ["neurons"] * n
    row_keys = index.cluster_keys(method)
    shown = np.asarray(files.npy(layout.cluster_tokens_file(method)))[:, :top_tokens]
    weights = np.zeros(shown.shape, dtype=np.float32)
    by_k = {k: index.clusters(method, k) for k in index.ks}
    tree_weights = None
    for row, row_key in enumerate(row_keys):
        ident = ClusterId.parse(row_key).complete(method, index.default_k)
        keys.append(store_key("cluster", str(ident)))
        if ident.k == 0:
            groups.append("tree")
            if tree_weights is None:
                tree_weights = np.asarray(files.npy(layout.tree_file(method, "top_weights")), dtype=np.float32)
            weights[row] = tree_weights[ident.number, :top_tokens]
        else:
            groups.append(f"k{ident.k}")
            listed = by_k[ident.k][ident.number].top_weights[:top_tokens]
            weights[row, : len(listed)] = listed
    offsets = np.asarray(files.npy(layout.cluster_neurons_offsets_file(method)))
    flat = np.asarray(files.npy(layout.cluster_neurons_file(method)))
    cut_members = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    has_tree = files.has(layout.tree_file(method, "children"))
    width = max(neuron_tokens.shape[1], shown.shape[1])
    return UnitSet(
        method=method,
        keys=keys,
        groups=groups,
        n_neurons=n,
        top_tokens=np.concatenate([_pad(neuron_tokens, width, -1), _pad(shown, width, -1)]).astype(np.int32),
        top_weights=np.concatenate([_pad(neuron_weights, width, 0), _pad(weights, width, 0)]).astype(np.float32),
        cut_members=cut_members,
        tree_children=np.asarray(files.npy(layout.tree_file(method, "children"))) if has_tree else None,
        neuron_mean=np.asarray(files.npy(layout.NEURON_MEAN), dtype=np.float32),
        neuron_std=np.maximum(np.asarray(files.npy(layout.NEURON_STD), dtype=np.float32), 1e-6),
    )


def _pad(array: np.ndarray, width: int, value: float) -> np.ndarray:
    if array.shape[1] == width:
        return array
    out = np.full((array.shape[0], width), value, dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return out


def explanation_table(units: UnitSet, n_kept: int) -> np.ndarray:
    """[Vk + 1, U] float32: each unit's simulated activation at each kept token (row Vk: any other
    token, 0). A token a unit lists twice keeps its first weight."""
    table = np.zeros((n_kept + 1, units.size), dtype=np.float32)
    columns = np.broadcast_to(np.arange(units.size)[:, None], units.top_tokens.shape)
    listed = units.top_tokens >= 0
    rows, cols, values = units.top_tokens[listed][::-1], columns[listed][::-1], units.top_weights[listed][::-1]
    table[rows, cols] = values  # written last-listed first, so the first listing wins
    return table


def cluster_activations(units: UnitSet, z: np.ndarray) -> np.ndarray:
    """[U - N, T] float32: each cluster row's activation at each token (the mean z of its neurons),
    from ``z`` [N, T] (neurons by tokens)."""
    tokens = z.shape[1]
    rows = units.size - units.n_neurons
    out = np.empty((rows, tokens), dtype=np.float32)
    for row, members in enumerate(units.cut_members):
        out[row] = z[members].mean(axis=0) if len(members) else 0.0
    tree_rows = [row for row in range(len(units.cut_members), rows)]
    if tree_rows and units.tree_children is not None:
        n = units.n_neurons
        sums = np.empty((n - 1, tokens), dtype=np.float32)
        sizes = np.empty(n - 1, dtype=np.int64)
        for node, (left, right) in enumerate(units.tree_children):
            a, b = int(left), int(right)
            sums[node] = (z[a] if a < n else sums[a - n]) + (z[b] if b < n else sums[b - n])
            sizes[node] = (1 if a < n else sizes[a - n]) + (1 if b < n else sizes[b - n])
        out[len(units.cut_members):] = sums / sizes[:, None]
    return out
