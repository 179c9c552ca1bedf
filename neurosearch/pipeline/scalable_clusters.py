"""Clustering past what exact complete linkage can hold (``ClusterConfig.mode = "scalable"``).

Exact complete linkage needs all N(N-1)/2 distances: 5.4 GB at 36,864 neurons, ~40 GB at 100k.
This mode keeps exact linkage where it matters -- between neurons that are close -- and returns
the same kind of tree, so cuts, refinement and the distance curve work unchanged:

1. **PCA**: unit profiles projected on their top ``pca_dims`` principal directions (fitted on a
   seeded sample of at most 20,000 rows), re-normalised.
2. **kNN graph**: every neuron's ``neighbours`` nearest neighbours by cosine in that space (hnswlib),
   edge weight = cosine similarity (non-positive edges dropped).
3. **Communities**: Leiden on that graph (igraph's ``community_leiden``, modularity, seeded); a
   community larger than ``max_community`` is split again by Leiden at a higher resolution.
   Without igraph, networkx's Louvain (slower).
4. **Blocks of communities**: complete linkage over a community distance -- the largest cosine
   distance between up to ``community_samples`` seeded members of each (full profiles), a lower
   bound of the true complete-linkage distance -- and that tree cut, from its root down, into the
   largest subtrees of at most ``max_block`` neurons.
5. **Exact complete linkage inside each block**, on the full unit profiles: every merge within a
   block is the one exact linkage of those neurons makes, at its true height.
6. **Blocks joined by complete linkage** over the block distance (the largest community distance
   between them); heights are made monotone (a join is never lower than what it joins).

With ``N <= max_block`` there is one block and the tree *is* exact complete linkage (the same
bits as ``mode = "exact"``); the approximation starts only where exact linkage would not fit.
All merges are ordered by height, so a cut at K undoes the K-1 highest merges. Memory: the unit
profiles, the PCA copy (N x pca_dims) and one block's exact linkage (about 4.7 bytes x
``max_block``^2: 1.9 GB at 20,000).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from neurosearch.errors import NeurosearchError


@dataclass(frozen=True)
class ScalableSettings:
    """Knobs of the scalable mode (defaults measured in ``benchmarks/cluster.py``)."""

    pca_dims: int = 128
    neighbours: int = 15
    max_community: int = 4000
    community_samples: int = 24
    max_block: int = 20_000
    """Neurons of the largest group clustered by exact complete linkage (at least ``max_community``)."""
    seed: int = 0


def pca_unit(unit: np.ndarray, dims: int, seed: int, sample: int = 8_000) -> np.ndarray:
    """Rows of ``unit`` projected on the top ``dims`` principal directions of a row sample, unit length.

    The directions come from a randomized SVD (two power iterations, float32, Gram-based
    orthonormalisation) of a seeded sample
    of at most ``sample`` centred rows; projecting all rows is one product per 8,192 rows.
    """
    n, width = unit.shape
    dims = min(dims, width, n)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    fit = unit[rows].astype(np.float32)
    mean = fit.mean(axis=0)
    fit -= mean
    basis = fit @ rng.standard_normal((width, min(width, dims + 10))).astype(np.float32)
    for _ in range(2):
        basis = fit @ (fit.T @ _orthonormal(basis))
    basis = _orthonormal(basis)
    small = basis.T @ fit  # [k, width]: its right singular vectors are the principal directions
    values, vectors = np.linalg.eigh((small @ small.T).astype(np.float64))
    order = np.argsort(values)[::-1][:dims]
    scale = np.sqrt(np.maximum(values[order], 1e-30))
    components = np.ascontiguousarray((vectors[:, order].T.astype(np.float32) @ small) / scale[:, None].astype(np.float32))
    del fit, basis
    out = np.empty((n, len(components)), dtype=np.float32)  # fewer than dims when the sample's rank is lower
    for i0 in range(0, n, 8192):
        out[i0 : i0 + 8192] = (unit[i0 : i0 + 8192] - mean) @ components.T
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def _orthonormal(basis: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``basis`` [n, k] via the eigen-decomposition of its k x k Gram
    matrix: small dense LAPACK work only (a threaded QR of a tall matrix stalls on a busy machine)."""
    values, vectors = np.linalg.eigh((basis.T @ basis).astype(np.float64))
    keep = values > values.max() * 1e-10
    return (basis @ (vectors[:, keep] / np.sqrt(values[keep])).astype(np.float32)).astype(np.float32)


def knn_edges(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected kNN edges (i < j, each once) and their cosine similarities, via hnswlib."""
    import hnswlib

    n, dim = vectors.shape
    k = min(k, n - 1)
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, ef_construction=100, M=16, random_seed=seed)
    index.add_items(vectors, np.arange(n))
    index.set_ef(max(2 * k, 50))
    labels, distances = index.knn_query(vectors, k=k + 1)
    source = np.repeat(np.arange(n), k + 1)
    target = labels.reshape(-1).astype(np.int64)
    similarity = 1.0 - distances.reshape(-1).astype(np.float64)
    keep = (source != target) & (similarity > 0)
    a, b = np.minimum(source, target)[keep], np.maximum(source, target)[keep]
    key = a * n + b
    key, first = np.unique(key, return_index=True)  # one edge per pair (both directions agree)
    return np.stack([key // n, key % n], axis=1), similarity[keep][first]


def communities(edges: np.ndarray, weights: np.ndarray, n: int, max_size: int, seed: int) -> list[np.ndarray]:
    """Groups of nodes (each sorted), none larger than ``max_size`` unless Leiden cannot split it."""
    labels = _leiden(edges, weights, n, 1.0, seed)
    groups = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)] if n else []
    done: list[np.ndarray] = []
    while groups:
        group = groups.pop()
        if len(group) <= max_size:
            done.append(group)
            continue
        inside = np.isin(edges[:, 0], group) & np.isin(edges[:, 1], group)
        local = np.searchsorted(group, edges[inside])
        split = None
        for resolution in (2.0, 4.0, 8.0, 16.0):
            sub = _leiden(local, weights[inside], len(group), resolution, seed)
            if sub.max() > 0:
                split = sub
                break
        if split is None:  # one tight blob: halve it along its node order (rare; bounded work)
            split = (np.arange(len(group)) >= len(group) // 2).astype(np.int64)
        groups.extend(group[split == c] for c in range(int(split.max()) + 1) if np.any(split == c))
    return sorted(done, key=lambda g: int(g[0]))


def _leiden(edges: np.ndarray, weights: np.ndarray, n: int, resolution: float, seed: int) -> np.ndarray:
    try:
        import igraph
    except ImportError:
        return _louvain_networkx(edges, weights, n, resolution, seed)
    import random

    graph = igraph.Graph(n=n, edges=edges.tolist())
    random.seed(seed)  # igraph draws from Python's generator
    igraph.set_random_number_generator(random)
    found = graph.community_leiden(objective_function="modularity", weights=weights.tolist(), resolution=resolution,
                                   n_iterations=-1)
    return np.asarray(found.membership, dtype=np.int64)


def _louvain_networkx(edges: np.ndarray, weights: np.ndarray, n: int, resolution: float, seed: int) -> np.ndarray:
    try:
        import networkx
    except ImportError:
        raise NeurosearchError("clusters mode 'scalable' needs igraph (pip install 'neurosearch[scale]') "
                               "or networkx") from None
    graph = networkx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from((int(a), int(b), float(w)) for (a, b), w in zip(edges, weights))
    labels = np.zeros(n, dtype=np.int64)
    for label, members in enumerate(networkx.community.louvain_communities(graph, resolution=resolution, seed=seed)):
        labels[list(members)] = label
    return labels


def _community_distances(unit: np.ndarray, groups: list[np.ndarray], samples: int, seed: int,
                         block_rows: int = 4096) -> np.ndarray:
    """Condensed [C(C-1)/2] max cosine distance between sampled members of every two communities.

    Sample rows are multiplied in blocks of about ``block_rows`` (a few large products: many small
    BLAS calls cost more in thread hand-offs than in arithmetic on a busy machine)."""
    rng = np.random.default_rng(seed)
    picked = [g if len(g) <= samples else np.sort(rng.choice(g, samples, replace=False)) for g in groups]
    rows = np.ascontiguousarray(unit[np.concatenate(picked)])
    starts = np.concatenate([[0], np.cumsum([len(p) for p in picked])]).astype(np.int64)
    c = len(groups)
    full = np.zeros((c, c), dtype=np.float64)
    a = 0
    while a < c:
        b = int(np.searchsorted(starts, starts[a] + block_rows, side="right")) - 1
        b = min(c, max(b, a + 1))
        dist = 1.0 - rows[starts[a] : starts[b]] @ rows.T  # [rows of communities a..b, all sample rows]
        per_column_group = np.maximum.reduceat(dist, starts[:-1], axis=1)  # [rows, C]
        full[a:b] = np.maximum.reduceat(per_column_group, starts[a:b] - starts[a], axis=0)
        a = b
    full = np.maximum(full, full.T)
    return np.clip(full[np.triu_indices(c, 1)], 0.0, 2.0)


def scalable_tree(unit: np.ndarray, settings: ScalableSettings | None = None, *, progress: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Scipy-format linkage matrix [N-1, 4] as described in the module docstring, and facts about it."""
    from neurosearch.pipeline.linkage import complete_linkage, linkage_tree

    settings = settings or ScalableSettings()
    unit = np.ascontiguousarray(unit, dtype=np.float32)
    n = unit.shape[0]
    if n < 2:
        return np.zeros((0, 4), dtype=np.float64), {"communities": n}
    if settings.max_block < settings.max_community:
        raise NeurosearchError(f"max_block ({settings.max_block}) must be at least max_community "
                               f"({settings.max_community})")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    described = {k: getattr(settings, k) for k in settings.__dataclass_fields__}

    def lap(step: str) -> None:
        nonlocal clock
        seconds[step] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    if n <= settings.max_block:  # one block: exact complete linkage of everything
        z = linkage_tree(unit, max_exact=n)
        lap("linkage inside")
        return z, {"seconds": seconds, "communities": 1, "blocks": 1, "largest_block": n, "settings": described}
    reduced = pca_unit(unit, settings.pca_dims, settings.seed)
    lap("pca")
    edges, weights = knn_edges(reduced, settings.neighbours, settings.seed)
    del reduced
    lap("knn")
    groups = communities(edges, weights, n, settings.max_community, settings.seed)
    lap("communities")
    square = np.zeros((len(groups), len(groups)))
    if len(groups) > 1:
        square = _square(_community_distances(unit, groups, settings.community_samples, settings.seed), len(groups))
    blocks = _blocks(square, [len(g) for g in groups], settings.max_block)
    lap("blocks")
    records: list[list[Any]] = []  # [left ref, right ref, height, count, level]; ref: ("leaf", i) or ("node", r)
    roots: list[tuple[str, int]] = []
    for number, block in enumerate(blocks):
        if progress is not None:
            progress("blocks", number, len(blocks))
        members = np.sort(np.concatenate([groups[c] for c in block]))
        with _small_blas(len(members) < 1000):  # many small products: thread hand-offs cost more than they give
            tree = linkage_tree(unit[members], max_exact=len(members))
        roots.append(_add_tree(records, tree, [("leaf", int(g)) for g in members]))
    lap("linkage inside")
    if len(blocks) > 1:
        between = np.array([[square[np.ix_(a, b)].max() for b in blocks] for a in blocks])
        _add_tree(records, complete_linkage(between[np.triu_indices(len(blocks), 1)]), roots, monotone=True)
    lap("linkage between")
    z = _ordered(records, n)
    lap("order")
    sizes = [sum(len(groups[c]) for c in block) for block in blocks]
    facts = {"seconds": seconds, "communities": len(groups), "largest_community": max(len(g) for g in groups),
             "blocks": len(blocks), "largest_block": max(sizes), "knn_edges": int(len(edges)), "settings": described}
    return z, facts


def _square(condensed: np.ndarray, c: int) -> np.ndarray:
    square = np.zeros((c, c))
    square[np.triu_indices(c, 1)] = condensed
    return square + square.T


def _blocks(distances: np.ndarray, sizes: list[int], max_block: int) -> list[list[int]]:
    """Groups of communities: the community tree (complete linkage over ``distances``) cut from
    its root down into the largest subtrees holding at most ``max_block`` neurons, in leaf order."""
    from neurosearch.pipeline.linkage import complete_linkage

    c = len(sizes)
    if c == 1:
        return [[0]]
    z = complete_linkage(distances[np.triu_indices(c, 1)])
    children = {c + i: (int(a), int(b)) for i, (a, b, _, _) in enumerate(z)}
    weight = list(sizes) + [0] * (c - 1)
    for i, (a, b, _, _) in enumerate(z):
        weight[c + i] = weight[int(a)] + weight[int(b)]

    def leaves(node: int) -> list[int]:
        found, stack = [], [node]
        while stack:
            top = stack.pop()
            if top < c:
                found.append(top)
            else:
                stack.extend(children[top])
        return sorted(found)

    blocks, stack = [], [2 * c - 2]
    while stack:
        node = stack.pop()
        if weight[node] <= max_block or node < c:
            blocks.append(leaves(node))
        else:
            stack.extend(children[node])
    return sorted(blocks)


@contextmanager
def _small_blas(single: bool) -> Iterator[None]:
    """One BLAS thread inside the block when ``single`` (and threadpoolctl is installed)."""
    if not single:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _height(records: list[list[Any]], ref: tuple[str, int]) -> tuple[float, int, int]:
    """(height, count, level) of a leaf or a record."""
    if ref[0] == "leaf":
        return 0.0, 1, 0
    record = records[ref[1]]
    return record[2], record[3], record[4]


def _add_tree(records: list[list[Any]], z: np.ndarray, leaves: list[tuple[str, int]],
              monotone: bool = False) -> tuple[str, int]:
    """Append tree ``z`` over ``leaves`` (refs) to ``records``; returns the ref of its root."""
    m = len(leaves)
    base = len(records)
    for a, b, height, _ in z:
        refs = [leaves[int(v)] if v < m else ("node", base + int(v) - m) for v in (a, b)]
        (ha, ca, la), (hb, cb, lb) = (_height(records, r) for r in refs)
        if monotone:
            height = max(float(height), ha, hb)
        records.append([refs[0], refs[1], float(height), ca + cb, 1 + max(la, lb)])
    return ("node", len(records) - 1) if len(z) else leaves[0]


def _ordered(records: list[list[Any]], n: int) -> np.ndarray:
    """Records as a linkage matrix, merges sorted by height (children always before parents)."""
    order = sorted(range(len(records)), key=lambda r: (records[r][2], records[r][4], r))
    new_id = np.empty(len(records), dtype=np.int64)
    new_id[order] = n + np.arange(len(records))
    z = np.empty((len(records), 4), dtype=np.float64)
    for row, r in enumerate(order):
        left, right, height, count, _ = records[r]
        ids = [ref[1] if ref[0] == "leaf" else int(new_id[ref[1]]) for ref in (left, right)]
        z[row] = (min(ids), max(ids), height, count)
    return z
