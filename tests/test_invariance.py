"""ECN losses: exemplar CE, smooth_hot soft targets (with the self overwrite), schedule."""
import math

import pytest
import torch

from uda_reid.adapt.invariance import invariance_loss, neighbor_soft_targets, use_neighbors


def log_softmax_row(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def test_exemplar_loss_value_and_gradient_match_hand_computation():
    sims = torch.tensor([[0.1, 0.5, -0.2], [0.3, 0.0, 0.9]], requires_grad=True)
    idx = torch.tensor([0, 2])
    t = 0.05
    loss = invariance_loss(sims, idx, temperature=t)
    rows = [[v / t for v in r] for r in sims.tolist()]
    expected = -(log_softmax_row(rows[0])[0] + log_softmax_row(rows[1])[2]) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for b, (row, own) in enumerate(zip(rows, [0, 2])):
        p = [math.exp(v) for v in log_softmax_row(row)]
        grad = [(p[j] - (j == own)) / t / 2 for j in range(3)]
        assert sims.grad[b].tolist() == pytest.approx(grad, abs=1e-5)


def test_soft_targets_weight_top_k_one_over_k_then_self_one():
    logits = torch.tensor([[0.9, 0.1, 0.8, 0.3, 0.7, 0.0],    # self (1) not in the top 3
                           [0.9, 0.1, 0.8, 0.3, 0.7, 0.0]])   # self (2) in the top 3
    targets = neighbor_soft_targets(logits, torch.tensor([1, 2]), knn=3)
    third = 1.0 / 3.0
    expected = torch.tensor([[third, 1.0, third, 0.0, third, 0.0],
                             [third, 0.0, 1.0, 0.0, third, 0.0]])
    assert torch.allclose(targets, expected)


def test_neighbourhood_loss_value_and_gradient_match_hand_computation():
    sims = torch.tensor([[0.5, 0.2, 0.45, -0.1, 0.3],
                         [0.1, 0.6, 0.0, 0.55, -0.3]], requires_grad=True)
    idx = torch.tensor([3, 1])
    t, k = 0.1, 2
    loss = invariance_loss(sims, idx, temperature=t, knn=k, neighbors=True)
    # row 0: top-2 = {0, 2} get 1/2, self 3 gets 1; row 1: top-2 = {1, 3}, self 1 -> 1
    targets = [[0.5, 0.0, 0.5, 1.0, 0.0], [0.0, 1.0, 0.0, 0.5, 0.0]]
    rows = [[v / t for v in r] for r in sims.tolist()]
    expected = -sum(sum(tj * lj for tj, lj in zip(tr, log_softmax_row(r)))
                    for tr, r in zip(targets, rows)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for b in range(2):
        p = [math.exp(v) for v in log_softmax_row(rows[b])]
        total = sum(targets[b])
        grad = [(total * p[j] - targets[b][j]) / t / 2 for j in range(5)]
        assert sims.grad[b].tolist() == pytest.approx(grad, abs=1e-4)


def test_neighbour_schedule_switches_on_at_epoch_five():
    assert [use_neighbors(e) for e in range(7)] == [False] * 5 + [True] * 2
    assert use_neighbors(2, start_epoch=2) and not use_neighbors(1, start_epoch=2)
    sims = torch.tensor([[0.5, 0.4, 0.3, 0.0]])
    idx = torch.tensor([0])
    exemplar = invariance_loss(sims, idx, knn=2, neighbors=use_neighbors(4))
    neighbour = invariance_loss(sims, idx, knn=2, neighbors=use_neighbors(5))
    assert exemplar.item() == pytest.approx(invariance_loss(sims, idx).item())
    assert neighbour.item() != pytest.approx(exemplar.item())
    # knn 0 keeps the exemplar loss even when neighbours are on (as the original)
    assert invariance_loss(sims, idx, knn=0, neighbors=True).item() == pytest.approx(
        exemplar.item())

