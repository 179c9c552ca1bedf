"""Complete linkage of unit-normalised neuron profiles on cosine distance, and cuts of its tree.

Exact complete linkage needs the dense condensed distance vector: N(N-1)/2 float64 values, i.e.
0.4 GB at N = 9,984 (BERT-base hidden: 13 x 768) and 5.4 GB at N = 36,864 (BERT-base FFN:
12 x 3072). The vector is filled block by block from BLAS products of unit rows (temporaries stay
near ``_BLOCK_BYTES``) and handed to fastcluster's C routine, which works in place instead of
copying it (``fastcluster.linkage`` itself would copy), so peak memory is about the vector plus
the unit profiles (``benchmarks/cluster.py`` measures it). This exact path is used up to ``max_exact`` (default 40,000 neurons:
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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


try:  # fastcluster is a hard dependency, but scipy gives the same tree (slower, more memory)
    import fastcluster as _fastcluster
except ImportError:  # pragma: no cover - exercised only without fastcluster
    _fastcluster = None

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages are ``distances``, ``assign`` and ``linkage``."""

MAX_EXACT = 40_000
"""Most neurons linked exactly (all pairs); above it, the prototype tree."""
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


def block_rows(n_cols: int) -> int:
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
    rows = min(512, block_rows(n))
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


def complete_linkage(condensed: np.ndarray) -> np.ndarray:
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
    max_exact: int = MAX_EXACT,
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
    z = complete_linkage(condensed)
    del condensed
    if progress is not None:
        progress("linkage", 1, 1)
    return z


def _nearest_rows(
    unit: np.ndarray, rows: np.ndarray, targets: np.ndarray, progress: Progress | None
) -> np.ndarray:
    """Index of the most cosine-similar row of ``targets`` for each of ``unit[rows]``, blockwise."""
    out = np.empty(rows.size, dtype=np.int64)
    step = block_rows(targets.shape[0])
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


def cut_roots(z: np.ndarray, k: int) -> np.ndarray:
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


def number_by_first_member(roots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    labels, _ = number_by_first_member(cut_roots(z, k))
    return labels


