"""Agglomerative clustering of neurons by their token profiles (paper section 3.3).

Each neuron is a row of a profile matrix [N, Vk] (one column per kept token). Rows are
unit-normalised, neurons are grouped by complete linkage on cosine distance ``1 - cos``, one tree
is cut at every K of ``ClusterConfig.ks``, and each cluster is refined by dropping the members
farthest from its centre (the paper's 0.6 rule).

Why complete linkage: a cluster's merge height is then the largest pairwise distance inside it,
so every cluster of the cut has a known diameter, and the within-cluster distance curve (paper
Fig. 2) needs no further pairwise products for its max term.

Scale
-----
Exact complete linkage needs the dense condensed distance vector: N(N-1)/2 float64 values, i.e.
0.4 GB at N = 9,984 (BERT-base hidden: 13 x 768) and 5.4 GB at N = 36,864 (BERT-base FFN:
12 x 3072). The vector is filled block by block from BLAS products of unit rows (temporaries stay
near ``_BLOCK_BYTES``) and handed to fastcluster's C routine, which works in place instead of
copying it (``fastcluster.linkage`` itself would copy), so peak memory is about the vector plus
the unit profiles: measured peak RSS 0.71 GB at 9,984 x 5,573 tokens and 6.4 GB at 36,864 x 5,573
(``benchmarks/cluster.py``). This exact path is used up to ``max_exact`` (default 40,000 neurons:
6.4 GB of distances).

Above ``max_exact`` (large models, several sites at once) ``linkage_tree`` switches to a
*prototype* tree whose memory no longer grows with N^2: a seeded random sample of ``prototypes``
neurons (default 20,000: 1.6 GB of distances, 2.5 GB in all with their copy and one block, besides
the N x Vk unit matrix itself, so 8 GB covers ~200k neurons at 5,573 tokens) is clustered
exactly, every other neuron is attached to its nearest prototype (cosine), and the returned N-leaf
tree merges each prototype with its attached neurons first (at height 0) and then follows the
prototype tree. What it trades: the diameter
guarantee of complete linkage holds for the prototypes only (attached neurons can make a cluster
wider, which refinement then trims), small neuron families without a sampled member are absorbed
by their nearest prototype, and cuts with K > ``prototypes`` split prototype groups in arbitrary
(but deterministic) order.

The clusters file ``methods/<method>/clusters_k<K>.json`` holds ``Cluster.to_json()`` dicts, one
per cluster, in cluster-id order; ``distance_curve.json`` holds ``distance_curve``'s dict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

from neurosearch.config import ClusterConfig

try:  # fastcluster is a hard dependency, but scipy gives the same tree (slower, more memory)
    import fastcluster as _fastcluster
except ImportError:  # pragma: no cover - exercised only without fastcluster
    _fastcluster = None

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages are ``distances``, ``assign`` and ``linkage``."""

_BLOCK_BYTES = 256 * 2**20
"""Bound on each float32 block product, so temporary memory stays small next to the N^2 vector."""


def unit_rows(profiles: np.ndarray) -> np.ndarray:
    """Float32 copy of ``profiles`` with unit L2 rows; all-zero rows stay zero.

    Cosine distance between profiles is then one minus a dot product, so one BLAS product gives a
    whole block of distances.
    """
    unit = np.array(profiles, dtype=np.float32, copy=True, order="C")
    if unit.ndim != 2:
        raise ValueError(f"profiles must be a 2-D [neurons, tokens] matrix, got shape {unit.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", unit, unit, dtype=np.float64))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit *= scale.astype(np.float32)[:, None]
    return unit


def _block_rows(n_cols: int) -> int:
    return max(1, min(8192, _BLOCK_BYTES // (4 * max(1, n_cols))))


def condensed_cosine(unit: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
    """Condensed float64 vector of ``1 - cos`` between all rows of ``unit``, clipped to [0, 2].

    The order is scipy's ``pdist`` order. Rows are processed in blocks: each block is one float32
    BLAS product against the rows at and after it (half the work of a full Gram matrix), copied
    row by row into the vector, then turned into distances in float64 in place. This is ~10x
    faster than ``pdist(metric='cosine')`` and needs only one block of temporary memory.
    """
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    n = unit.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    # Each block also computes its own lower triangle (b^2/2 wasted pairs, ~b/n of the work), so
    # blocks stay a few hundred rows: still large enough for BLAS to run at full speed.
    rows = min(512, _block_rows(n))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        gram = unit[i0:i1] @ unit[i0:].T  # [i1-i0, n-i0]
        start = i0 * n - i0 * (i0 + 1) // 2
        pos = start
        for r in range(i1 - i0):
            length = n - (i0 + r) - 1
            out[pos : pos + length] = gram[r, r + 1 :]
            pos += length
        chunk = out[start:pos]
        np.subtract(1.0, chunk, out=chunk)
        np.clip(chunk, 0.0, 2.0, out=chunk)
        del gram
        if progress is not None:
            progress("distances", i1, n)
    return out


def _complete_linkage(condensed: np.ndarray) -> np.ndarray:
    """Complete-linkage tree of a condensed vector; the vector is used as scratch space.

    ``fastcluster.linkage`` 1.3 starts with ``array(X)``, which copies X even with
    ``preserve_input=False`` (5.4 GB more at 36,864 neurons), so its C entry point is called
    directly when present, on our own C-contiguous float64 vector.
    """
    if _fastcluster is not None:
        wrap = getattr(_fastcluster, "linkage_wrap", None)
        method = getattr(_fastcluster, "mthidx", {}).get("complete")
        if wrap is not None and method is not None:
            n = int(round((1 + np.sqrt(1 + 8 * condensed.size)) / 2))
            assert n * (n - 1) // 2 == condensed.size and condensed.dtype == np.float64
            assert condensed.flags.c_contiguous and condensed.flags.writeable
            z = np.empty((n - 1, 4), dtype=np.float64)
            wrap(n, condensed, z, method)
            return z
        return np.asarray(_fastcluster.linkage(condensed, method="complete", preserve_input=False))
    from scipy.cluster.hierarchy import linkage  # pragma: no cover

    return linkage(condensed, method="complete")  # pragma: no cover


def linkage_tree(
    unit: np.ndarray,
    *,
    progress: Progress | None = None,
    max_exact: int = 40_000,
    prototypes: int = 20_000,
    seed: int = 0,
) -> np.ndarray:
    """Scipy-format linkage matrix Z [N-1, 4] of complete linkage on cosine distance.

    Exact for N <= ``max_exact``; above it, the prototype tree described in the module docstring
    (``prototypes`` randomly sampled neurons, ``seed`` fixes the sample), which bounds memory by
    the sample rather than by N.
    """
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    n = unit.shape[0]
    if n < 2:
        return np.zeros((0, 4), dtype=np.float64)
    if n > max_exact and prototypes < n:
        return _prototype_tree(unit, prototypes=max(1, prototypes), seed=seed, progress=progress)
    condensed = condensed_cosine(unit, progress=progress)
    if progress is not None:
        progress("linkage", 0, 1)
    z = _complete_linkage(condensed)
    del condensed
    if progress is not None:
        progress("linkage", 1, 1)
    return z


def _nearest_rows(
    unit: np.ndarray, rows: np.ndarray, targets: np.ndarray, progress: Progress | None
) -> np.ndarray:
    """Index of the most cosine-similar row of ``targets`` for each of ``unit[rows]``, blockwise."""
    out = np.empty(rows.size, dtype=np.int64)
    step = _block_rows(targets.shape[0])
    for i0 in range(0, rows.size, step):
        i1 = min(rows.size, i0 + step)
        out[i0:i1] = np.argmax(unit[rows[i0:i1]] @ targets.T, axis=1)
        if progress is not None:
            progress("assign", i1, rows.size)
    return out


def _prototype_tree(
    unit: np.ndarray, *, prototypes: int, seed: int, progress: Progress | None
) -> np.ndarray:
    """N-leaf tree: prototype groups (attached at height 0) joined by the prototypes' exact tree."""
    n = unit.shape[0]
    protos = np.sort(np.random.default_rng(seed).choice(n, size=prototypes, replace=False))
    p = protos.size
    proto_unit = unit[protos]
    sub = linkage_tree(proto_unit, progress=progress, max_exact=p)
    is_proto = np.zeros(n, dtype=bool)
    is_proto[protos] = True
    others = np.flatnonzero(~is_proto)
    nearest = _nearest_rows(unit, others, proto_unit, progress)
    del proto_unit

    z = np.empty((n - 1, 4), dtype=np.float64)
    node = protos.astype(np.int64)  # current tree node of each prototype group
    count = np.ones(p, dtype=np.int64)
    row = 0
    for leaf, g in zip(others.tolist(), nearest.tolist()):  # index order: deterministic
        count[g] += 1
        z[row] = (min(node[g], leaf), max(node[g], leaf), 0.0, count[g])
        node[g] = n + row
        row += 1
    # The prototype tree's leaf i is group i; its internal node p + j is our node n + row0 + j.
    row0 = row
    sub_nodes = np.concatenate([node, n + row0 + np.arange(p - 1, dtype=np.int64)])
    sizes = np.concatenate([count, np.zeros(p - 1, dtype=np.int64)])
    for j in range(p - 1):
        a, b = int(sub[j, 0]), int(sub[j, 1])
        sizes[p + j] = sizes[a] + sizes[b]
        na, nb = sub_nodes[a], sub_nodes[b]
        z[row] = (min(na, nb), max(na, nb), sub[j, 2], sizes[p + j])
        row += 1
    return z


def _cut_roots(z: np.ndarray, k: int) -> np.ndarray:
    """Tree node (leaf id or n + merge row) heading each leaf's cluster when ``k`` remain."""
    z = np.asarray(z)
    n = z.shape[0] + 1
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n:
        raise ValueError(
            f"cannot cut a tree of {n} neurons into k={k} clusters: need 1 <= k <= {n}"
        )
    merges = n - int(k)  # the first n - k merges happen; the last k - 1 are undone
    root = np.arange(2 * n - 1, dtype=np.int64)
    children = z[:merges, :2].astype(np.int64)
    for i in range(merges - 1, -1, -1):  # parents come after children, so walk top-down
        r = root[n + i]
        root[children[i, 0]] = r
        root[children[i, 1]] = r
    return root[:n]


def _number_by_first_member(roots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0..k-1 ordered by each cluster's smallest member, and the root of each label."""
    uniq, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse].astype(np.int64), uniq[order]


def cut_tree(z: np.ndarray, k: int) -> np.ndarray:
    """Labels 0..k-1 giving exactly ``k`` clusters, numbered by their smallest member index.

    Undoes the last k-1 merges of Z (``fcluster(..., 'maxclust')`` can return fewer clusters when
    merge heights tie). Raises ``ValueError`` unless 1 <= k <= N.
    """
    labels, _ = _number_by_first_member(_cut_roots(z, k))
    return labels


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
    rows = min(1024, _block_rows(m))
    for i0 in range(0, m, rows):
        i1 = min(m, i0 + rows)
        gram = u[i0:i1] @ u[i0:].T
        gram[:, : i1 - i0][np.tri(i1 - i0, dtype=bool)] = np.inf  # only pairs j > i
        min_cos = min(min_cos, float(gram.min()))
    mean = float(np.clip(1.0 - mean_cos, 0.0, 2.0))
    return mean, float(np.clip(1.0 - min_cos, 0.0, 2.0))


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
        labels, roots = _number_by_first_member(_cut_roots(z, k))
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
