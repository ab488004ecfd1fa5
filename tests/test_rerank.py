"""k-reciprocal re-ranking against a direct, loop-by-loop implementation of the definition."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from uda_reid.evaluation.rerank import dense_neighbours, re_ranking, re_ranking_features

from kreciprocal_reference import dense_encodings, dense_jaccard_of


def slow_re_ranking(q_g, q_q, g_g, k1, k2, lam):
    """Zhong et al.'s algorithm written out on the dense (N, N) matrix, one row at a time."""
    nq = q_g.shape[0]
    d = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    d = (d / d.max(axis=0)).T
    rank = np.argsort(d, axis=1, kind="stable")

    jac = dense_jaccard_of(dense_encodings(d, rank, k1, k2), nq)
    final = (1 - lam) * jac + lam * d[:nq]
    return final[:, nq:]


def blobs(rng, n, dim=16, centers=6, spread=0.35):
    c = rng.standard_normal((centers, dim))
    x = c[rng.integers(0, centers, n)] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32)


def mean_ap(dist, q_ids, g_ids):
    aps = []
    for i in range(len(dist)):
        order = np.argsort(dist[i], kind="stable")
        hits = (g_ids[order] == q_ids[i]).astype(float)
        if hits.sum() == 0:
            continue
        prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append((prec * hits).sum() / hits.sum())
    return float(np.mean(aps))


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (7, 3, 0.5), (4, 1, 0.0), (11, 12, 1.0)])
def test_re_ranking_matches_dense_definition(k1, k2, lam):
    rng = np.random.default_rng(k1 * 10 + k2)
    x = blobs(rng, 70).astype(np.float64)
    q, g = x[:15], x[15:]
    q_g, q_q, g_g = cdist(q, g), cdist(q, q), cdist(g, g)
    ours = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam, block_size=8)
    ref = slow_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    assert ours.shape == (15, 55) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_re_ranking_reads_columns_of_asymmetric_blocks():
    """The original divides by column maxima and transposes; asymmetric inputs expose that."""
    rng = np.random.default_rng(3)
    q_g = rng.random((6, 20)) + 0.1
    q_q = rng.random((6, 6)) + 0.1
    g_g = rng.random((20, 20)) + 0.1
    np.fill_diagonal(q_q, 0.0)
    np.fill_diagonal(g_g, 0.0)
    ours = re_ranking(q_g, q_q, g_g, k1=5, k2=3, lambda_value=0.3, block_size=4)
    np.testing.assert_allclose(ours, slow_re_ranking(q_g, q_q, g_g, 5, 3, 0.3), atol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_re_ranking_features_equals_dense_re_ranking(metric, backend):
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 12, 160)
    centers = rng.standard_normal((12, 32))
    x = (centers[ids] + 0.6 * rng.standard_normal((160, 32))).astype(np.float32)
    q, g = x[:30], x[30:]
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        dist = lambda a, b: 1.0 - a.astype(np.float64) @ b.T.astype(np.float64)  # noqa: E731
        q_g, q_q, g_g = dist(qn, gn), dist(qn, qn), dist(gn, gn)
    else:
        q_g, q_q, g_g = cdist(q, g), cdist(q, q), cdist(g, g)
    dense = re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)
    feats = re_ranking_features(torch.from_numpy(q), g, k1=20, k2=6, lambda_value=0.3,
                                metric=metric, backend=backend)
    np.testing.assert_allclose(feats, dense, atol=1e-6)
    assert mean_ap(feats, ids[:30], ids[30:]) == pytest.approx(mean_ap(dense, ids[:30], ids[30:]))


def test_re_ranking_improves_map_on_clustered_features():
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 20, 400)
    centers = rng.standard_normal((20, 24))
    x = (centers[ids] + 0.9 * rng.standard_normal((400, 24))).astype(np.float32)
    plain = cdist(x[:80], x[80:])
    reranked = re_ranking_features(x[:80], x[80:])
    assert mean_ap(reranked, ids[:80], ids[80:]) > mean_ap(plain, ids[:80], ids[80:])


def test_re_ranking_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not fit"):
        re_ranking(np.zeros((3, 4)), np.zeros((3, 3)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="metric"):
        re_ranking_features(np.zeros((3, 4)), np.zeros((5, 4)), metric="manhattan")


def test_fewer_points_than_k1_uses_every_point_as_the_original_does():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 5))
    q, g = x[:4], x[4:]
    q_g, q_q, g_g = cdist(q, g), cdist(q, q), cdist(g, g)
    ref = slow_re_ranking(q_g, q_q, g_g, 20, 6, 0.3)
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g), ref, atol=1e-6)
    np.testing.assert_allclose(re_ranking_features(q, g), ref, atol=1e-6)


@pytest.mark.parametrize("block_size", [3, 1024])
@pytest.mark.parametrize("signed", [False, True])
def test_dense_neighbours_rank_the_column_normalised_squared_distances(block_size, signed):
    rng = np.random.default_rng(4)
    q, g = blobs(rng, 9), blobs(rng, 23)
    q_g, q_q, g_g = cdist(q, g), cdist(q, q), cdist(g, g)
    if signed:  # negative entries: ranked by their squares, as the authors' code does
        q_g[:, ::2] *= -1
    ranks, col_max = dense_neighbours(q_g, q_q, g_g, 5, block_size)
    d = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    np.testing.assert_allclose(col_max, d.max(axis=0), rtol=1e-5)
    expected = np.argsort((d / d.max(axis=0)).T, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ranks, expected)
