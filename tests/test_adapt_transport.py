"""Sinkhorn-Knopp label transport against a slow plain-loop reference; marginals; degenerate
inputs."""
import math

import numpy as np
import pytest
import torch

from uda_reid.adapt.transport import (TransportOptions, sinkhorn, transport_batch_labels,
                                      transport_epoch_labels)


def reference_sinkhorn(scores, epsilon, marginals=None, rounds=3000):
    """Plain Python loops in float64: a_i, b_j with Q_ij = a_i exp(s_ij / eps) b_j."""
    s = np.asarray(scores, dtype=np.float64)
    n, k = s.shape
    c = np.ones(k) if marginals is None else np.asarray(marginals, dtype=np.float64)
    c = c * n / c.sum()
    kern = [[math.exp((s[i][j] - s[i].max()) / epsilon) for j in range(k)] for i in range(n)]
    a, b = [1.0] * n, [1.0] * k
    for _ in range(rounds):
        for j in range(k):
            b[j] = c[j] / sum(kern[i][j] * a[i] for i in range(n))
        for i in range(n):
            a[i] = 1.0 / sum(kern[i][j] * b[j] for j in range(k))
    return np.array([[a[i] * kern[i][j] * b[j] for j in range(k)] for i in range(n)])


@pytest.mark.parametrize("n,k,epsilon,weights", [(6, 3, 0.5, None), (9, 4, 0.2, None),
                                                 (7, 3, 1.0, [1.0, 2.0, 4.0])])
def test_sinkhorn_meets_the_marginals_and_equals_the_reference(n, k, epsilon, weights):
    rng = np.random.default_rng(n)
    scores = rng.normal(size=(n, k))
    marginals = None if weights is None else torch.tensor(weights)
    result = sinkhorn(torch.tensor(scores, dtype=torch.float32), epsilon, iterations=5000,
                      tolerance=1e-10, marginals=marginals)
    q = result.assignment.numpy()
    target = np.ones(k) if weights is None else np.array(weights)
    target = target * n / target.sum()
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=0), target, atol=1e-6)
    expected = reference_sinkhorn(np.asarray(torch.tensor(scores, dtype=torch.float32),
                                             dtype=np.float64), epsilon, weights)
    np.testing.assert_allclose(q, expected, atol=1e-6)
    assert result.notes == [] and result.error <= 1e-10


def test_equipartition_moves_samples_off_a_crowded_cluster():
    # every sample prefers cluster 0; the cheapest balanced plan sends 1 and 5 to cluster 1
    # (costs 2 + 1.5) and 2 and 3 to cluster 2 (costs 2.5 + 2)
    scores = torch.tensor([[3.0, 0.0, 0.0], [3.0, 1.0, 0.0], [3.0, 0.0, 0.5],
                           [3.0, 0.0, 1.0], [3.0, 0.0, 0.0], [3.0, 1.5, 0.0]])
    result = sinkhorn(scores, epsilon=0.05, iterations=5000, tolerance=1e-9)
    assert torch.bincount(result.labels, minlength=3).tolist() == [2, 2, 2]
    assert result.labels.tolist() == [0, 1, 2, 2, 0, 1]


def test_small_epsilon_does_not_underflow():
    scores = torch.tensor([[900.0, 0.0], [0.0, 900.0], [1000.0, 0.0], [0.0, 1000.0]])
    result = sinkhorn(scores, epsilon=1e-3, iterations=50, tolerance=1e-3)
    assert torch.isfinite(result.assignment).all()
    assert result.labels.tolist() == [0, 1, 0, 1]


def test_one_cluster_is_reported_and_takes_everything():
    result = sinkhorn(torch.randn(5, 1), 0.1, 1000, 1e-3)
    np.testing.assert_allclose(result.assignment.numpy(), np.ones((5, 1)), atol=1e-12)
    assert any("one cluster" in note for note in result.notes)


def test_fewer_samples_than_clusters_is_reported_and_finite():
    result = sinkhorn(torch.randn(2, 5), 0.1, iterations=2000, tolerance=1e-9)
    assert torch.isfinite(result.assignment).all()
    np.testing.assert_allclose(result.assignment.sum(0).numpy(), [0.4] * 5, atol=1e-6)
    assert any("fewer samples" in note for note in result.notes)


def test_a_cluster_no_sample_can_reach_is_reported_and_gets_no_mass():
    scores = torch.randn(6, 3)
    scores[:, 1] = -float("inf")
    result = sinkhorn(scores, 0.5, iterations=2000, tolerance=1e-9)
    q = result.assignment
    assert torch.isfinite(q).all() and float(q[:, 1].abs().max()) == 0.0
    np.testing.assert_allclose(q.sum(0).numpy(), [3.0, 0.0, 3.0], atol=1e-6)
    assert any("empty clusters" in note for note in result.notes)


@pytest.mark.parametrize("scores,message", [
    (torch.tensor([[0.0, float("nan")]]), "NaN"),
    (torch.tensor([[-float("inf"), -float("inf")], [0.0, 0.0]]), "rows \\[0\\]"),
    (torch.zeros(3), "\\(N, K\\)")])
def test_bad_inputs_raise_a_clear_error(scores, message):
    with pytest.raises(ValueError, match=message):
        sinkhorn(scores, 0.1, 1000, 1e-3)


def test_epoch_transport_keeps_outliers_and_can_follow_the_cluster_sizes():
    labels = np.array([0, 0, 0, -1, 1, 1])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [9.0, 9.0], [2.0, 0.0],
                           [0.0, 2.0]])
    equal = TransportOptions("epoch", epsilon=0.1, iterations=5000, tolerance=1e-9,
                             marginals="equal")
    new, result = transport_epoch_labels(logits, labels, equal)
    # equipartition of the 5 labelled rows (2.5 each): the last row goes to class 1 whole,
    # the four rows tied for class 0 share the other 1.5 of class 1 (0.375 each)
    assert new.tolist() == [0, 0, 0, -1, 0, 1]
    q = result.assignment.numpy()
    np.testing.assert_allclose(q.sum(0), [2.5, 2.5], atol=1e-6)
    np.testing.assert_allclose(q[:4, 1], 0.375, atol=1e-6)
    sizes = TransportOptions("epoch", 0.1, 5000, 1e-9, marginals="sizes")
    new, result = transport_epoch_labels(logits, labels, sizes)
    q = result.assignment.numpy()
    np.testing.assert_allclose(q.sum(0), [3.0, 2.0], atol=1e-6)  # the current sizes 3 and 2
    np.testing.assert_allclose(q[:4, 1], 0.25, atol=1e-6)


def test_batch_transport_reassigns_among_the_batch_classes_keeping_their_counts():
    labels = torch.tensor([5, 5, 2, 2, -1])
    logits = torch.zeros(5, 8)
    logits[0, 5] = logits[1, 2] = logits[2, 2] = 1.0
    logits[3, 7] = 10.0  # class 7 is not in the batch: not a candidate
    logits[3, 5] = 1.0
    options = TransportOptions("batch", epsilon=0.05, iterations=2000, tolerance=1e-9,
                               marginals="equal")
    new = transport_batch_labels(logits, labels, options)
    # rows 1 and 3 swap classes: two rows per class, the outlier stays out
    assert new.tolist() == [5, 2, 2, 5, -1]


def test_transport_options_are_checked():
    with pytest.raises(ValueError, match="TRANSPORT must be 'none' or one of"):
        TransportOptions("online", 0.04, 1000, 1e-3, "equal")
    with pytest.raises(ValueError, match="TRANSPORT_MARGINALS"):
        TransportOptions("epoch", 0.04, 1000, 1e-3, marginals="prior")
    with pytest.raises(ValueError, match="TRANSPORT_EPSILON"):
        TransportOptions("epoch", 0.0, 1000, 1e-3, "equal")
