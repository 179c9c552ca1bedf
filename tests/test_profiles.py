"""Profiles on hand-made matrices: frequency filter, Eq. 1 means, Eq. 2 smoothing, TF-IDF, search peaks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosearch.pipeline.embeddings import dequantize_rows, nearest_neighbours, quantize_rows
from neurosearch.pipeline.profiles import choose_min_count, filter_tokens, method_profiles, raw_profiles, smooth, tfidf, top_tokens
from neurosearch.index.postings import PARTS, Postings, build_postings
from neurosearch.pipeline.search import peak_weights


def test_frequency_filter_drops_rare_and_special_tokens():
    ids = np.array([1, 2, 5, 7, 9])
    counts = np.array([30, 5, 25, 100, 20])
    vocab = {1: "[UNK]", 2: "a", 5: "b", 7: "[CLS]", 9: "c"}
    kept = filter_tokens(ids, counts, vocab, min_count=20)
    assert kept.tokens == ["b", "c"]
    assert kept.ids.tolist() == [5, 9] and kept.rows.tolist() == [2, 4] and kept.counts.tolist() == [25, 20]


def test_auto_min_count_scales_with_corpus_size():
    assert choose_min_count("auto", 937_703) == 20
    assert choose_min_count("auto", 103_000_000) == 412
    assert choose_min_count(5, 10**9) == 5
    with pytest.raises(ValueError):
        choose_min_count(0, 100)


def test_eq1_means_are_neurons_by_tokens():
    sums = np.array([[2.0, 4.0], [3.0, 3.0], [9.0, 9.0]])
    counts = np.array([2, 3, 1])
    np.testing.assert_array_equal(raw_profiles(sums, counts, np.array([0, 1])), [[1.0, 1.0], [2.0, 1.0]])


def test_eq2_smoothing_with_a_fixed_neighbour_table():
    profiles = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    neighbours = np.array([[1, 2], [0, 2], [0, 1]])
    similarity = np.array([[0.5, 0.25], [1.0, 0.0], [0.2, 0.4]], dtype=np.float32)
    # R[v] + lambda/n * sum_i sim(v, i) R[i], lambda = 0.5, n = 2, from the unsmoothed values
    expected = [[1 + 0.25 * (0.5 * 2 + 0.25 * 3), 2 + 0.25 * (1.0 * 1), 3 + 0.25 * (0.2 * 1 + 0.4 * 2)]]
    np.testing.assert_allclose(smooth(profiles, neighbours, similarity, lam=0.5), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [[1.4375, 2.25, 3.25]])


def test_tfidf_on_the_positive_z_part():
    profiles = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [2.0, 0, 2.0, 0]], dtype=np.float32)
    # z-scores: n0 -> (sqrt3, -1/sqrt3, ...), n1 likewise, n2 -> (1, -1, 1, -1); df counts z > 1
    idf_common = math.log(4 / 2) + 1  # tokens 0 and 1: one neuron each with z > 1
    idf_rare = math.log(4 / 1) + 1    # tokens 2 and 3: none
    expected = [[idf_common, 0, 0, 0], [0, idf_common, 0, 0], [0.5 * idf_common, 0, 0.5 * idf_rare, 0]]
    np.testing.assert_allclose(tfidf(profiles), expected, rtol=1e-6)


def test_methods_combine_in_order():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(4, 6)).astype(np.float32)
    neighbours, similarity = nearest_neighbours(rng.normal(size=(6, 3)), n=2)
    both = method_profiles(raw, "filter+smooth+tfidf", neighbours, similarity)
    np.testing.assert_allclose(both, tfidf(smooth(raw, neighbours, similarity)), rtol=1e-6)
    np.testing.assert_array_equal(method_profiles(raw, "filter"), raw)
    with pytest.raises(ValueError):
        method_profiles(raw, "filter+smooth")


def test_top_tokens_and_peak_scores():
    profiles = np.array([[0.0, 5.0, 1.0, 3.0], [2.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    index, values = top_tokens(profiles, 2)
    assert index.tolist() == [[1, 3], [0, 1]] and values[0].tolist() == [5.0, 3.0]
    weights = peak_weights(profiles, index)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0, rtol=1e-6)
    postings = build_postings(index, weights, 4)
    scores = Postings(*(postings[part].tolist() for part in PARTS), n_rows=2).scores({1: 1.0})
    assert scores[0] > 0.8 and 1 not in scores  # row 1 peaks only on token 0


def test_neighbours_and_quantised_space():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    index, sims = nearest_neighbours(vectors, n=1)
    assert index[:, 0].tolist() == [1, 0, 3, 2]
    codes, scale = quantize_rows(vectors)
    restored = dequantize_rows(codes, scale)
    np.testing.assert_allclose(restored @ restored.T, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @
                               (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T, atol=0.02)


def test_fasttext_vectors_from_word_pieces(tmp_path):
    pytest.importorskip("fasttext")
    from neurosearch.pipeline.embeddings import fasttext_embeddings

    rng = np.random.default_rng(0)
    days = ["monday", "tuesday", "friday"]
    colours = ["red", "green", "blue"]
    documents = [[*rng.choice(days, 3), "is", "a", "day"] if i % 2 else [*rng.choice(colours, 3), "is", "a", "colour"]
                 for i in range(400)]
    vectors = fasttext_embeddings(documents, ["monday", "tuesday", "red", "##zz"], dim=16, epochs=5, work_dir=tmp_path)
    assert vectors.shape == (4, 16) and np.isfinite(vectors).all()
    assert not list(tmp_path.iterdir()), "the training file must be removed"


def test_fasttext_divergence_retries_at_a_lower_rate(tmp_path):
    """fastText's "Encountered NaN" (it diverges now and then on tiny corpora) is retried at half the rate."""
    import types

    from neurosearch.errors import NeurosearchError
    from neurosearch.pipeline.embeddings import FASTTEXT_LEARNING_RATE, FASTTEXT_TRIES, _train_skipgram

    rates: list[float] = []

    def train_unsupervised(path, **kwargs):
        rates.append(kwargs["lr"])
        if len(rates) < 3:
            raise RuntimeError("Encountered NaN.")
        return "model"

    fake = types.SimpleNamespace(train_unsupervised=train_unsupervised)
    assert _train_skipgram(fake, "corpus.txt", dim=4, epochs=1, min_count=1) == "model"
    assert rates == [FASTTEXT_LEARNING_RATE, FASTTEXT_LEARNING_RATE / 2, FASTTEXT_LEARNING_RATE / 4]

    def always_nan(path, **kwargs):
        raise RuntimeError("Encountered NaN.")

    with pytest.raises(NeurosearchError, match=f"learning rate {FASTTEXT_LEARNING_RATE / 2 ** (FASTTEXT_TRIES - 1):g}"):
        _train_skipgram(types.SimpleNamespace(train_unsupervised=always_nan), "corpus.txt", dim=4, epochs=1,
                        min_count=1)
