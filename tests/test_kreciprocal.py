"""Sparse min-overlap and Jaccard of k-reciprocal encodings against the dense definition."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from uda_reid.utils.kreciprocal import overlap_blocks, sparse_jaccard


def random_encodings(n: int = 37, per_row: int = 6, seed: int = 0) -> sp.csr_matrix:
    """(n, n) rows summing to 1 on a few random columns; rows 3 and 20 are empty."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n, n), np.float32)
    for i in range(n):
        cols = rng.choice(n, size=rng.integers(1, per_row + 1), replace=False)
        dense[i, cols] = rng.random(len(cols)) + 0.05
        dense[i] /= dense[i].sum()
    dense[[3, 20]] = 0.0
    return sp.csr_matrix(dense)


def dense_overlap(v: np.ndarray) -> np.ndarray:
    """O[i, j] = sum_l min(v[i, l], v[j, l]), pair by pair."""
    n = len(v)
    return np.array([[np.minimum(v[i], v[j]).sum() for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("max_cells", [1, 50, 1 << 20])
@pytest.mark.parametrize("col_start", [0, 11])
def test_overlap_blocks_equal_the_dense_min_sum(max_cells, col_start):
    v = random_encodings()
    expected = dense_overlap(v.toarray().astype(np.float64))
    rows = np.array([5, 0, 3, 36, 12, 20, 7])
    seen = []
    for lo, hi, block in overlap_blocks(v, rows, col_start, max_cells):
        assert block.shape == (hi - lo, 37 - col_start)
        np.testing.assert_allclose(block, expected[rows[lo:hi], col_start:], atol=1e-7)
        seen += range(lo, hi)
    assert seen == list(range(len(rows)))


@pytest.mark.parametrize("max_cells,chunk", [
    (1, 1 << 21), (100, 1 << 21), (1 << 20, 1 << 21), (100, 1), (1 << 20, 37), (1, 200)])
def test_sparse_jaccard_stores_exactly_the_pairs_that_share_a_column(max_cells, chunk):
    v = random_encodings(seed=1)
    overlap = dense_overlap(v.toarray().astype(np.float64))
    jac = sparse_jaccard(v, max_cells, chunk)
    assert jac.dtype == np.float32 and jac.has_sorted_indices
    stored = np.zeros((37, 37), bool)
    stored[jac.nonzero()] = True
    coo = jac.tocoo()
    stored[coo.row, coo.col] = True  # explicit zeros (identical rows) count as stored
    np.testing.assert_array_equal(stored, overlap > 0)
    np.testing.assert_allclose(coo.data, np.maximum(
        1 - overlap[coo.row, coo.col] / (2 - overlap[coo.row, coo.col]), 0), atol=1e-6)
    assert jac[3].nnz == 0 and jac[:, 20].nnz == 0
    assert jac[0, 0] == 0 and 0 in jac.indices[jac.indptr[0]:jac.indptr[1]]


def test_sparse_jaccard_sums_duplicate_entries_first():
    v = random_encodings(seed=2)
    # every stored entry split into two halves stored side by side
    counts = np.diff(v.indptr)
    halves = sp.csr_matrix((np.repeat(v.data / 2, 2), np.repeat(v.indices, 2),
                            np.concatenate([[0], np.cumsum(2 * counts)])), shape=v.shape)
    assert halves.nnz == 2 * v.nnz and not halves.has_canonical_format
    np.testing.assert_allclose(sparse_jaccard(halves).toarray(), sparse_jaccard(v).toarray(),
                               atol=1e-7)
