"""Sparse k-reciprocal Jaccard distance against a dense, loop-by-loop implementation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from uda_reid.adapt.clustering import cluster
from uda_reid.adapt.pseudo_labels import compute_jaccard_distance

from kreciprocal_reference import dense_encodings, dense_jaccard_of


def dense_jaccard(x, k1, k2):
    """The SpCL / OpenUnReID definition on l2-normalised x, written out densely."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float64)
    n = len(x)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    rank = np.argsort(d2, axis=1, kind="stable")[:, :k1]  # a k1-column search result

    jac = dense_jaccard_of(dense_encodings(d2, rank, k1, k2), n)
    return np.maximum(jac, 0.0)


def blob_features(seed, n=90, dim=12, centers=7, spread=0.5):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim))
    labels = rng.integers(0, centers, n)
    return (c[labels] + spread * rng.standard_normal((n, dim))).astype(np.float32), labels


def densify(m: sp.csr_matrix) -> np.ndarray:
    """Absent entries mean distance 1."""
    out = np.ones(m.shape)
    coo = m.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


@pytest.mark.parametrize("k1,k2", [(20, 6), (10, 3), (5, 1), (13, 13), (30, 6)])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_sparse_jaccard_equals_dense_definition(k1, k2, backend):
    x, _ = blob_features(k1 + k2)
    ours = compute_jaccard_distance(x, k1=k1, k2=k2, search_option=backend)
    assert sp.isspmatrix_csr(ours) and ours.dtype == np.float32
    np.testing.assert_allclose(densify(ours), dense_jaccard(x, k1, k2), atol=1e-6)


def test_only_pairs_sharing_neighbours_are_stored_and_diagonal_is_explicit_zero():
    x, _ = blob_features(1, n=120, centers=12, spread=0.2)
    d = compute_jaccard_distance(x, k1=6, k2=2)
    assert (d.data < 1).all()
    assert d.nnz < 0.5 * 120 * 120  # far blobs share nothing
    diag = d.diagonal()
    assert np.allclose(diag, 0.0, atol=1e-6) and (diag == 0).any()
    assert all(i in d.indices[d.indptr[i]:d.indptr[i + 1]] for i in range(120))


@pytest.mark.parametrize("eps", [0.3, 0.55, 0.8])
def test_dbscan_on_sparse_jaccard_equals_dbscan_on_dense(eps):
    x, _ = blob_features(5, n=150, centers=6, spread=0.7)
    sparse = compute_jaccard_distance(x, k1=12, k2=4)
    a = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(sparse)
    b = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(densify(sparse))
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(b)) > 2
    backend = cluster("dbscan", eps, x, sparse)  # prunes entries beyond eps first
    np.testing.assert_array_equal(backend.labels, b)


def test_jaccard_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k1 >= 1"):
        compute_jaccard_distance(np.zeros((4, 3)), k1=0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        compute_jaccard_distance(np.zeros(4))
