"""Neuron profiles over the kept vocabulary: frequency filter, smoothing (Eq. 2), TF-IDF.

A profile is a row of the [neurons x kept tokens] matrix of Eq. 1 means, post-processed by one of
the paper's methods (Table 3): ``filter``, ``filter+tfidf``, ``filter+smooth``,
``filter+smooth+tfidf``.

TF-IDF needs non-negative "term frequencies", but activations are signed (the paper's code divided
by a signed row sum, which is ill-defined). We use the positive part of each neuron's z-scored
profile, ``P[n, v] = max(0, (R[n, v] - mean_n) / std_n)``: how far above its usual level a neuron
fires for token v. Then ``tf = P / sum_v P``, a token's document frequency is the number of neurons
with ``z > 1`` for it, ``idf = log((1 + N) / (1 + df)) + 1`` (scikit-learn's smoothed idf), and the
profile is ``tf * idf``. Tokens that excite many neurons are damped, as in text retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurosearch.config import METHODS

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>", "<pad>", "<mask>", "<unk>")


def choose_min_count(setting: int | str, total_tokens: int) -> int:
    """``auto``: max(20, 4 per million tokens) -- 20 on small corpora, ~400 on the paper's 103M C4."""
    if setting == "auto":
        return max(20, int(round(4e-6 * total_tokens)))
    value = int(setting)
    if value < 1:
        raise ValueError("min_count must be at least 1")
    return value


@dataclass
class KeptTokens:
    """The vocabulary that survives the frequency filter, in vocabulary-id order."""

    ids: np.ndarray
    """int64 [Vk] vocabulary ids."""
    tokens: list[str]
    counts: np.ndarray
    """int64 [Vk] corpus counts."""
    rows: np.ndarray
    """int64 [Vk] rows of these tokens in the statistics arrays."""
    min_count: int

    def to_json(self) -> dict:
        return {
            "ids": self.ids.tolist(),
            "tokens": self.tokens,
            "counts": self.counts.tolist(),
            "min_count": self.min_count,
        }


def filter_tokens(
    token_ids: np.ndarray, token_counts: np.ndarray, id_to_token: dict[int, str], min_count: int
) -> KeptTokens:
    """Keep tokens seen at least ``min_count`` times, dropping special tokens."""
    rows = []
    for row, (token_id, count) in enumerate(zip(token_ids.tolist(), token_counts.tolist())):
        token = id_to_token.get(token_id, "")
        if count >= min_count and token and token not in SPECIAL_TOKENS:
            rows.append(row)
    rows_array = np.asarray(rows, dtype=np.int64)
    return KeptTokens(
        ids=token_ids[rows_array].astype(np.int64),
        tokens=[id_to_token[int(token_ids[row])] for row in rows],
        counts=token_counts[rows_array].astype(np.int64),
        rows=rows_array,
        min_count=min_count,
    )


def raw_profiles(token_sums: np.ndarray, token_counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Eq. 1 for the kept tokens, as float32 [neurons, kept tokens]."""
    means = token_sums[rows] / token_counts[rows, None]
    return np.ascontiguousarray(means.T, dtype=np.float32)


def smooth(profiles: np.ndarray, neighbours: np.ndarray, similarity: np.ndarray, lam: float = 0.5) -> np.ndarray:
    """Eq. 2: ``R[:, v] += lam / n * sum_i sim(v, i) * R[:, i]`` over v's n neighbours i.

    Computed from the unsmoothed values (one sparse product), so the order of tokens is irrelevant.
    ``neighbours`` and ``similarity`` are [Vk, n] (kept-token indices and cosine similarities).
    """
    from scipy import sparse

    vocab, n = neighbours.shape
    weights = sparse.csr_matrix(
        (similarity.reshape(-1).astype(np.float64), (np.repeat(np.arange(vocab), n), neighbours.reshape(-1))),
        shape=(vocab, vocab),
    )
    # (R @ W.T)[:, v] = sum_i W[v, i] R[:, i]
    mixed = (weights @ profiles.T.astype(np.float64)).T
    return (profiles + (lam / n) * mixed).astype(np.float32)


def positive_z(profiles: np.ndarray) -> np.ndarray:
    """Positive part of each neuron's z-scored profile (0 for constant profiles)."""
    mean = profiles.mean(axis=1, keepdims=True)
    std = profiles.std(axis=1, keepdims=True)
    z = np.divide(profiles - mean, std, out=np.zeros_like(profiles), where=std > 0)
    return np.maximum(z, 0.0)


def tfidf(profiles: np.ndarray) -> np.ndarray:
    """TF-IDF with neurons as documents, on the positive z-part (module docstring)."""
    positive = positive_z(profiles.astype(np.float64))
    totals = positive.sum(axis=1, keepdims=True)
    tf = np.divide(positive, totals, out=np.zeros_like(positive), where=totals > 0)
    df = (positive > 1.0).sum(axis=0)
    idf = np.log((1.0 + profiles.shape[0]) / (1.0 + df)) + 1.0
    return (tf * idf[None, :]).astype(np.float32)


def method_profiles(
    raw: np.ndarray,
    method: str,
    neighbours: np.ndarray | None = None,
    similarity: np.ndarray | None = None,
    lam: float = 0.5,
) -> np.ndarray:
    """The profiles of one Table 3 method from the raw (filtered) Eq. 1 means."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    result = raw
    if "smooth" in method:
        if neighbours is None or similarity is None:
            raise ValueError("smoothing needs a neighbour table")
        result = smooth(result, neighbours, similarity, lam)
    if "tfidf" in method:
        result = tfidf(result)
    return result


def top_tokens(profiles: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``m`` largest entries, best first: (indices int32 [N, m], values float32 [N, m])."""
    m = min(m, profiles.shape[1])
    part = np.argpartition(-profiles, m - 1, axis=1)[:, :m]
    values = np.take_along_axis(profiles, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    indices = np.take_along_axis(part, order, axis=1)
    return indices.astype(np.int32), np.take_along_axis(values, order, axis=1).astype(np.float32)
