"""Search vectors: how neurons and clusters are scored against a query, and their HNSW indexes.

Scoring (exact): a cluster (and, with ``ProfileConfig.neuron_score_tokens=None``, a neuron) is
represented by its *peaks*: the positive z-scores of its profile over its top-M tokens,
unit-normalised. By default a neuron is represented by its first 10 top tokens at equal weight,
the expected precision of what ``find`` shows for it. Either way the score of a query with token
weights ``q`` is the cosine ``sum_t q_t s[t] / |q|``, computed from inverted lists
(``postings.py``). A row scores high only when the query's tokens are among the tokens it fires for
most -- which is what a researcher means by "a neuron for weekdays" and what precision@10 of its
top tokens measures. Cosine over the whole vocabulary, by contrast, is dominated by a neuron's
broad offset (docs/decisions.md).

Approximate (HNSW): the same weights, mapped into the token embedding space
(``sum_t s[t] E_t``, unit), give dense D-dim vectors; hnswlib returns candidates by cosine to the
query's dense vector, and the exact score reranks them. The exact path is fast for indexes of
thousands of neurons; the HNSW path is what scales to millions. recall@10 of one against the other
is measured by ``benchmarks/retrieval.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def peak_weights(profiles: np.ndarray, top_index: np.ndarray) -> np.ndarray:
    """Unit-normalised positive z-scores of each row at its top tokens ([N, M], aligned with top_index)."""
    mean = profiles.mean(axis=1, keepdims=True, dtype=np.float64)
    std = profiles.std(axis=1, keepdims=True, dtype=np.float64)
    peaks = np.take_along_axis(profiles, top_index.astype(np.int64), axis=1).astype(np.float64)
    z = np.divide(peaks - mean, std, out=np.zeros_like(peaks), where=std > 0)
    weights = np.maximum(z, 0.0)
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    return np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0).astype(np.float32)


def dense_vectors(top_index: np.ndarray, weights: np.ndarray, token_space: np.ndarray) -> np.ndarray:
    """``sum_t w_t E_t`` per row, unit-normalised: peaks in the token embedding space."""
    vectors = np.einsum("nm,nmd->nd", weights, token_space[top_index.astype(np.int64)], optimize=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)


def build_hnsw(vectors: np.ndarray, path: Path, *, m: int = 16, ef_construction: int = 200, seed: int = 0) -> None:
    """An hnswlib cosine index over ``vectors`` written to ``path`` (atomically)."""
    import hnswlib

    from neurosearch.format.atomic import atomic_path

    index = hnswlib.Index(space="cosine", dim=int(vectors.shape[1]))
    index.init_index(max_elements=max(1, len(vectors)), ef_construction=ef_construction, M=m, random_seed=seed)
    index.set_num_threads(1)  # deterministic graph: the index file hash is reproducible
    index.add_items(vectors.astype(np.float32), np.arange(len(vectors)))
    with atomic_path(path) as tmp:
        index.save_index(str(tmp))

