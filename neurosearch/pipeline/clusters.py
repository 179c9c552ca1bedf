"""Agglomerative clustering of neurons by their token profiles (paper section 3.3).

Each neuron is a row of a profile matrix [N, Vk] (one column per kept token). Rows are
unit-normalised, neurons are grouped by complete linkage on cosine distance ``1 - cos``, one tree
is cut at every K of ``ClusterConfig.ks``, and each cluster is refined by dropping the members
farthest from its centre (the paper's 0.6 rule).

Why complete linkage: a cluster's merge height is then the largest pairwise distance inside it,
so every cluster of the cut has a known diameter, and the within-cluster distance curve (paper
Fig. 2) needs no further pairwise products for its max term.

The clusters file ``methods/<method>/clusters_k<K>.json`` holds ``format.clusters.Cluster.to_json()`` dicts, one
per cluster, in cluster-id order; ``distance_curve.json`` holds ``distance_curve``'s dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse

from neurosearch.pipeline.linkage import block_rows, cut_roots, number_by_first_member, cut_tree
from neurosearch.config import ClusterConfig
from neurosearch.format.clusters import Cluster


def refine(unit_members: np.ndarray, max_distance: float = 0.6) -> np.ndarray:
    """Keep-mask after repeatedly dropping the member farthest from the cluster centre.

    The centre is the normalised mean of the kept members' unit vectors, so the distance is the
    Euclidean distance between two unit vectors as in the paper (0.6 = cosine similarity 0.82 to
    the centre). Stops once every kept member is closer than ``max_distance`` or one is left.
    Each drop updates the centre with one matrix-vector product instead of a new mean.
    """
    u = np.asarray(unit_members, dtype=np.float32)
    m = u.shape[0]
    keep = np.ones(m, dtype=bool)
    if m <= 1:
        return keep
    sq = np.einsum("ij,ij->i", u, u, dtype=np.float64)  # 1, or 0 for empty profiles
    total = u.sum(axis=0, dtype=np.float64)
    dots = (u @ total.astype(np.float32)).astype(np.float64)  # u_i . sum of kept
    total_sq = float(total @ total)
    kept = m
    limit = float(max_distance)
    while kept > 1:
        norm = np.sqrt(max(total_sq, 0.0))
        cos = dots / norm if norm > 0 else np.zeros(m)
        dist = np.sqrt(np.maximum(sq - 2.0 * cos + (1.0 if norm > 0 else 0.0), 0.0))
        dist[~keep] = -1.0
        far = int(np.argmax(dist))
        if dist[far] < limit:
            break
        keep[far] = False
        kept -= 1
        total_sq += -2.0 * dots[far] + sq[far]
        dots -= u @ u[far]
    return keep


def _pair_stats(u: np.ndarray) -> tuple[float, float]:
    """Mean and max pairwise cosine distance among rows of ``u`` (0, 0 below two rows).

    The mean comes from the row sum (sum of all dot products = |sum|^2), the max from blockwise
    products, so memory stays at one block however large the cluster.
    """
    m = u.shape[0]
    if m < 2:
        return 0.0, 0.0
    u = np.ascontiguousarray(u, dtype=np.float32)
    s = u.sum(axis=0, dtype=np.float64)
    sq = float(np.einsum("ij,ij->", u, u, dtype=np.float64))
    mean_cos = (float(s @ s) - sq) / (m * (m - 1))
    min_cos = np.inf
    rows = min(1024, block_rows(m))
    for i0 in range(0, m, rows):
        i1 = min(m, i0 + rows)
        gram = u[i0:i1] @ u[i0:].T
        gram[:, : i1 - i0][np.tri(i1 - i0, dtype=bool)] = np.inf  # only pairs j > i
        min_cos = min(min_cos, float(gram.min()))
    mean = float(np.clip(1.0 - mean_cos, 0.0, 2.0))
    return mean, float(np.clip(1.0 - min_cos, 0.0, 2.0))


def _members_by_label(labels: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")  # members ascending within each label
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(k)]


def build_clusters(
    unit: np.ndarray,
    z: np.ndarray,
    k: int,
    *,
    neurons_per_layer: int,
    config: ClusterConfig,
) -> list[Cluster]:
    """The ``k`` clusters of tree ``z``, refined and summarised, in cut order (id = label).

    ``unit`` is ``unit_rows(profiles)``; top tokens come from the mean of the kept members' rows
    so that every neuron weighs the same whatever its activation scale.
    """
    if neurons_per_layer < 1:
        raise ValueError(f"neurons_per_layer must be positive, got {neurons_per_layer}")
    labels = cut_tree(z, k)
    clusters = []
    for cid, members in enumerate(_members_by_label(labels, k)):
        u = np.asarray(unit[members], dtype=np.float32)
        if config.refine:
            keep = refine(u, config.refine_max_distance)
        else:
            keep = np.ones(len(members), dtype=bool)
        kept_u = u[keep]
        mean = kept_u.mean(axis=0, dtype=np.float64)
        n_top = min(int(config.top_tokens), mean.size)
        top = np.argsort(-mean, kind="stable")[:n_top]
        layers, counts = np.unique(members[keep] // neurons_per_layer, return_counts=True)
        avg, mx = _pair_stats(kept_u)
        clusters.append(
            Cluster(
                id=cid,
                neurons=members[keep].tolist(),
                dropped=members[~keep].tolist(),
                top_tokens=top.tolist(),
                top_weights=mean[top].tolist(),
                layer_sizes=dict(zip(layers.tolist(), counts.tolist())),
                avg_distance=avg,
                max_distance=mx,
            )
        )
    return clusters


def distance_curve(unit: np.ndarray, z: np.ndarray, ks: Sequence[int]) -> dict[str, Any]:
    """Average within-cluster max and mean cosine distance against K (paper Fig. 2).

    Averages run over all K clusters of each cut (singletons count 0), before refinement. The max
    is the cluster's complete-linkage merge height, exactly its largest pairwise distance, so no
    pairwise products are needed (for a prototype tree it is the prototypes' diameter, a lower
    bound); the mean comes from per-cluster row sums: mean cos = (|sum|^2 - m) / (m (m - 1)).
    K values above N are skipped.
    """
    unit = np.asarray(unit, dtype=np.float32)
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[0] + 1
    if unit.shape[0] != n:
        raise ValueError(f"unit has {unit.shape[0]} rows but the tree has {n} leaves")
    sq = np.einsum("ij,ij->i", unit, unit, dtype=np.float64)
    result: dict[str, Any] = {"ks": [], "avg_max_distance": [], "avg_mean_distance": [],
                              "singletons": []}
    for k in sorted({int(k) for k in ks if 1 <= int(k) <= n}):
        labels, roots = number_by_first_member(cut_roots(z, k))
        heights = np.zeros(k)
        merged = roots >= n
        heights[merged] = z[roots[merged] - n, 2]
        indicator = scipy.sparse.csr_matrix(
            (np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n)
        )
        sums = np.asarray(indicator @ unit, dtype=np.float64)  # [k, D] per-cluster row sums
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        own = np.bincount(labels, weights=sq, minlength=k)
        pairs = sizes * (sizes - 1)
        cross = np.einsum("ij,ij->i", sums, sums) - own
        mean_dist = np.where(pairs > 0, 1.0 - cross / np.maximum(pairs, 1), 0.0)
        result["ks"].append(k)
        result["avg_max_distance"].append(float(np.mean(heights)))
        result["avg_mean_distance"].append(float(np.mean(np.clip(mean_dist, 0.0, 2.0))))
        result["singletons"].append(int(np.sum(sizes == 1)))
    return result
