"""The files ``find`` reads without numpy: .npy rows and inverted lists of scoring weights."""

from __future__ import annotations

import numpy as np
import pytest

from neurosearch.format.manifest import IndexError_
from neurosearch.format.npyfile import NpyFile
from neurosearch.index.postings import PARTS, Postings, build_postings, ranked
from neurosearch.format.atomic import save_npy_atomic


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64"])
def test_npy_file_reads_what_numpy_wrote(tmp_path, dtype):
    array = (np.arange(24).reshape(4, 6) * 3 - 20).astype(dtype)
    save_npy_atomic(tmp_path / "a.npy", array)
    table = NpyFile(tmp_path / "a.npy")
    assert table.shape == (4, 6) and len(table) == 4
    assert list(table.row(2)) == array[2].tolist()
    assert list(table[5:9]) == array.reshape(-1)[5:9].tolist() and table[7] == array.reshape(-1)[7] and table[-1] == array[-1, -1]
    assert table.tolist() == array.reshape(-1).tolist() and table[30:40] == ()
    with pytest.raises(IndexError):
        table.row(4)


def test_npy_file_names_a_corrupt_file(tmp_path):
    path = tmp_path / "a.npy"
    save_npy_atomic(path, np.arange(10, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    with pytest.raises(IndexError_, match=f"corrupt index file {path}"):
        NpyFile(path)
    path.write_bytes(b"not an array")
    with pytest.raises(IndexError_, match="not an .npy file"):
        NpyFile(path)
    path.write_bytes(b"")
    with pytest.raises(IndexError_, match=str(path)):
        NpyFile(path)


def test_postings_score_a_hand_made_case():
    top = np.array([[1, 3], [0, 1]])
    weights = np.array([[0.8, 0.6], [1.0, 0.0]], dtype=np.float32)
    built = build_postings(top, weights, n_tokens=4)
    assert built["offsets"].tolist() == [0, 1, 2, 2, 3]  # token 0: row 1; token 1: row 0 (row 1's zero is left out); token 3: row 0
    assert built["rows"].tolist() == [1, 0, 0] and built["rows"].dtype == np.uint16
    scores = Postings(*(built[part].tolist() for part in PARTS), n_rows=2).scores({1: 1.0, 3: 1.0})
    assert scores == pytest.approx({0: (0.8 + 0.6) / 2**0.5}, rel=1e-3)  # float16 weights
    assert ranked(scores, range(2)) == [(0, scores[0]), (1, 0.0)]


def test_ranked_breaks_ties_by_row_and_fills_with_zero_rows():
    scores = {2: 0.5, 0: 0.5, 3: 0.7}
    assert ranked(scores, range(5), limit=4) == [(3, 0.7), (0, 0.5), (2, 0.5), (1, 0.0)]
    assert ranked(scores, [3, 1, 2], limit=None) == [(3, 0.7), (2, 0.5), (1, 0.0)]


def test_postings_equal_the_dense_peak_cosine():
    rng = np.random.default_rng(0)
    n_rows, n_tokens, m = 50, 40, 6
    top = np.stack([rng.choice(n_tokens, m, replace=False) for _ in range(n_rows)])
    weights = rng.random((n_rows, m)).astype(np.float16).astype(np.float32)
    query = {int(t): float(w) for t, w in zip(rng.choice(n_tokens, 8, replace=False), rng.random(8))}
    vector = np.zeros(n_tokens)
    vector[list(query)] = list(query.values())
    dense = (weights * vector[top]).sum(axis=1) / np.linalg.norm(vector)
    built = build_postings(top, weights, n_tokens)
    scores = Postings(*(built[part].tolist() for part in PARTS), n_rows=n_rows).scores(query)
    np.testing.assert_allclose([scores.get(r, 0.0) for r in range(n_rows)], dense, rtol=1e-6, atol=1e-9)


def test_precision_scores_count_a_rows_top_tokens_and_ties_go_to_the_deeper_list():
    top = np.array([[0, 1, 2], [2, 3, 0], [4, 5, 6]])
    built = build_postings(top[:, :2], np.ones((3, 2), dtype=np.float32), n_tokens=7)
    postings = Postings(*(built[part].tolist() for part in PARTS), n_rows=3)
    query = {0: 0.9, 2: 0.5, 3: 0.5}
    scores = postings.scores(query, scale=1 / 2)  # expected share of each row's first 2 tokens
    assert scores == pytest.approx({0: 0.45, 1: 0.5})
    deep_built = build_postings(top, np.ones((3, 3), dtype=np.float32), n_tokens=7)
    deep = Postings(*(deep_built[part].tolist() for part in PARTS), n_rows=3).scores(query, scale=1 / 3)
    tied = {0: 0.5, 1: 0.5}
    assert ranked(tied, range(3), secondary=deep) == [(1, 0.5), (0, 0.5), (2, 0.0)]  # row 1: 3 of 3 deep tokens
    assert ranked(tied, range(3)) == [(0, 0.5), (1, 0.5), (2, 0.0)]
    assert postings.top(query, 2, scale=1 / 2, secondary=deep) == [(1, 0.5), (0, 0.45)]
