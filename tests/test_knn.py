"""Exact k-NN search (faiss and blockwise torch) against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from uda_reid.utils.knn import knn, self_knn


def brute(x, y, metric):
    if metric == "l2":
        s = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
        return s, np.argsort(s, axis=1, kind="stable")
    s = x.astype(np.float64) @ y.T.astype(np.float64)
    return s, np.argsort(-s, axis=1, kind="stable")


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.standard_normal((103, 9)).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("backend,block_size", [("torch", 16), ("torch", 3), ("faiss", 16)])
def test_self_knn_matches_brute_force_with_farthest_and_kept_block(points, metric, backend,
                                                                   block_size):
    """block_size 3: 35 column blocks per row block, so candidates are merged on the way."""
    s, order = brute(points, points, metric)
    res = self_knn(points, 7, metric, farthest=True, keep=(slice(10, 30), slice(40, 103)),
                   backend=backend, block_size=block_size)
    np.testing.assert_array_equal(res.indices, order[:, :7])
    np.testing.assert_allclose(res.scores, np.take_along_axis(s, order[:, :7], 1), atol=1e-4)
    far = s.max(1) if metric == "l2" else s.min(1)
    np.testing.assert_allclose(res.farthest, far, atol=1e-4)
    np.testing.assert_allclose(res.block, s[10:30, 40:103], atol=1e-4)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_knn_between_sets_matches_brute_force(points, metric, backend):
    q, db = points[:20], points[20:]
    s, order = brute(q, db, metric)
    scores, idx = knn(q, db, 5, metric, backend=backend, block_size=3)
    np.testing.assert_array_equal(idx, order[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(s, order[:, :5], 1), atol=1e-4)


def test_k_is_capped_at_the_number_of_points(points):
    res = self_knn(points[:5], 20)
    assert res.indices.shape == (5, 5)
    assert sorted(res.indices[0]) == list(range(5))


def test_unknown_metric_or_backend_is_named():
    with pytest.raises(ValueError, match="'cos'"):
        self_knn(np.zeros((3, 2)), 2, metric="cos")
    with pytest.raises(ValueError, match="'gpu'"):
        knn(np.zeros((3, 2)), np.zeros((3, 2)), 2, backend="gpu")
