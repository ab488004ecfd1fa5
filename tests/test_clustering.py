"""Clustering backends, outlier policies, degenerate results, centroids, label quality."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from uda_reid.adapt.clustering import (
    CLUSTER_BACKENDS,
    apply_outlier_policy,
    build_backend,
    cluster,
    summarize,
)
from uda_reid.adapt.label_quality import label_quality, pairwise_scores
from uda_reid.adapt.pseudo_labels import (
    PseudoLabeler,
    cluster_centroids,
    compute_jaccard_distance,
    multi_granularity_labels,
)
from uda_reid.config.sections.cluster import ClusterConfig


def sphere_blobs(seed=0, per=25, num=8, dim=32, noise=0.25):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.repeat(np.arange(num), per)
    x = centers[labels] + noise * rng.standard_normal((len(labels), dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("name,granularity", [("dbscan", 0.6), ("hdbscan", 10), ("kmeans", 8)])
def test_each_backend_recovers_known_blobs(name, granularity):
    x, truth = sphere_blobs()
    backend = build_backend(name)
    distance = compute_jaccard_distance(x, k1=20, k2=6) if backend.uses_distance else None
    result = cluster(backend, granularity, x, distance)
    kept = result.labels >= 0
    assert kept.mean() > 0.9
    assert adjusted_rand_score(truth[kept], result.labels[kept]) > 0.9
    assert result.num_clusters == 8 and result.degenerate is None


def test_registry_knows_backends_and_suggests_close_names():
    assert {"dbscan", "hdbscan", "kmeans"} <= set(CLUSTER_BACKENDS)
    with pytest.raises(KeyError, match="dbscan"):
        build_backend("dbscn")


def test_all_outliers_is_reported_not_raised():
    x, _ = sphere_blobs(per=6)
    d = compute_jaccard_distance(x, k1=5, k2=2)
    result = cluster("dbscan", 0.01, x, d)
    assert result.num_clusters == 0 and result.num_outliers == len(x)
    assert "outliers" in result.degenerate
    assert (result.labels == -1).all() and result.num_classes == 0
    single = cluster("dbscan", 0.01, x, d, outliers="singleton")
    assert sorted(single.labels) == list(range(len(x))) and single.degenerate is not None


def test_one_cluster_is_reported():
    x, _ = sphere_blobs(num=1, per=40)
    result = cluster("kmeans", 1, x)
    assert result.num_clusters == 1 and "single cluster" in result.degenerate


def test_dbscan_rejects_eps_that_would_read_absent_entries():
    x, _ = sphere_blobs(per=5)
    with pytest.raises(ValueError, match="absent entries mean distance 1"):
        cluster("dbscan", 1.0, x, compute_jaccard_distance(x, k1=4, k2=2))


def test_outlier_policies():
    raw = np.array([0, -1, 1, -1, 0, 2, -1])
    np.testing.assert_array_equal(apply_outlier_policy(raw, "drop"), raw)
    np.testing.assert_array_equal(apply_outlier_policy(raw, "singleton"), [0, 3, 1, 4, 0, 2, 5])
    r = summarize(raw, "singleton")
    assert (r.num_clusters, r.num_outliers, r.num_classes) == (3, 3, 6)
    with pytest.raises(ValueError, match="outlier policy"):
        apply_outlier_policy(raw, "ignore")


def test_cluster_centroids_are_normalised_class_means_ignoring_outliers():
    x = np.array([[1, 0], [3, 0], [0, 2], [5, 5], [0, 4]], np.float32)
    labels = np.array([0, 0, 1, -1, 1])
    c = cluster_centroids(x, labels)
    np.testing.assert_allclose(c, [[1, 0], [0, 1]], atol=1e-6)
    with pytest.raises(ValueError, match="no sample"):
        cluster_centroids(x, np.array([0, 0, 2, 2, 2]))


def test_multi_granularity_gives_one_clustering_per_eps_coarser_with_larger_eps():
    x, truth = sphere_blobs(noise=0.6)
    results = multi_granularity_labels(x, [0.3, 0.5, 0.7], "dbscan", k1=20, k2=6)
    assert len(results) == 3
    outliers = [r.num_outliers for r in results]
    assert outliers == sorted(outliers, reverse=True)
    for r in results:
        heads = cluster_centroids(x, r.labels)
        assert heads.shape == (r.num_clusters, 32)
        np.testing.assert_allclose(np.linalg.norm(heads, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("overrides,expected_clusters", [
    (dict(BACKEND="kmeans", NUM_CLUSTERS=(4, 8)), [4, 8]),
    (dict(BACKEND="dbscan", EPS=(0.6,), K1=20), [8]),
    (dict(BACKEND="hdbscan", MIN_CLUSTER_SIZE=(10,)), [8]),
])
def test_pseudo_labeler_from_config_uses_the_backend_granularities(overrides, expected_clusters):
    x, truth = sphere_blobs()
    labeler = PseudoLabeler.from_config(ClusterConfig(OUTLIERS="singleton", **overrides))
    assert len(labeler.granularities) == len(expected_clusters)
    results = labeler(x)
    assert [r.num_clusters for r in results] == expected_clusters
    assert adjusted_rand_score(truth, results[-1].labels) > 0.9
    assert (results[-1].labels >= 0).all()  # singleton policy: no -1 left


@pytest.mark.parametrize("spherical", [True, False])
def test_kmeans_granularities_give_k_consecutive_labels_each(spherical):
    x, truth = sphere_blobs()
    labeler = PseudoLabeler.from_config(ClusterConfig(
        BACKEND="kmeans", NUM_CLUSTERS=(6, 8, 12), KMEANS_SPHERICAL=spherical,
        KMEANS_ITERS=50, KMEANS_REDO=3))
    results = labeler(x)
    for k, result in zip((6, 8, 12), results):
        assert sorted(np.unique(result.labels)) == list(range(k))
        assert result.num_clusters == k and result.num_outliers == 0
    assert adjusted_rand_score(truth, results[1].labels) > 0.9


def brute_pairwise(pred, true):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        same_pred = pred[i] == pred[j] and pred[i] >= 0
        same_true = true[i] == true[j]
        tp += same_pred and same_true
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r


@pytest.mark.parametrize("seed", range(4))
def test_pairwise_precision_recall_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, 60)
    pred = np.where(rng.random(60) < 0.7, true, rng.integers(-1, 8, 60))
    pred[rng.random(60) < 0.1] = -1
    got = pairwise_scores(pred, true)
    p, r = brute_pairwise(pred, true)
    assert got["pairwise_precision"] == pytest.approx(p)
    assert got["pairwise_recall"] == pytest.approx(r)
    assert got["pairwise_f"] == pytest.approx(2 * p * r / (p + r))


def test_label_quality_counts_and_perfect_labels():
    true = np.array([0, 0, 1, 1, 2, 2])
    q = label_quality(np.array([5, 5, 7, 7, 9, 9]), true)
    assert q["nmi"] == pytest.approx(1.0) and q["ari"] == pytest.approx(1.0)
    assert q["pairwise_precision"] == q["pairwise_recall"] == 1.0
    q = label_quality(np.array([0, 0, 0, -1, -1, 1]), true)
    assert (q["num_clusters"], q["num_outliers"]) == (2, 2)
    assert q["pairwise_precision"] == pytest.approx(1 / 3)
    assert q["pairwise_recall"] == pytest.approx(1 / 3)
