"""MMT's soft cross-entropy and soft (softmax) triplet loss against hand computations."""
import math

import pytest
import torch

from uda_reid.losses.functional import triplet_loss
from uda_reid.losses.soft_targets import soft_cross_entropy, soft_triplet_loss


def log_softmax(values):
    top = max(values)
    lse = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - lse for v in values]


def softmax(values):
    return [math.exp(v) for v in log_softmax(values)]


def test_soft_cross_entropy_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.5]], requires_grad=True)
    reference = torch.tensor([[0.0, 1.0, 0.0], [3.0, -2.0, 0.0]], requires_grad=True)
    hand = 0.0
    for row, ref in zip(logits.tolist(), reference.tolist()):
        hand -= sum(r * lp for r, lp in zip(softmax(ref), log_softmax(row)))
    loss = soft_cross_entropy(logits, reference)
    assert loss.item() == pytest.approx(hand / 2, rel=1e-6)
    loss.backward()
    assert reference.grad is None and logits.grad.abs().sum() > 0  # the reference is a target
    # against its own predictions the gradient vanishes (softmax - softmax)
    same = logits.detach().clone().requires_grad_(True)
    soft_cross_entropy(same, same.detach()).backward()
    assert torch.allclose(same.grad, torch.zeros_like(same.grad), atol=1e-7)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_cross_entropy(logits, reference[:, :2])


def test_soft_triplet_loss_matches_a_hand_computation():
    # 1-d features: ids 0, 0, 1, 1 at 0, 1, 3, 7 (student) and 0, 2, 2.5, 4 (reference)
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]], requires_grad=True)
    ref = torch.tensor([[0.0], [2.0], [2.5], [4.0]])
    y = torch.tensor([0, 0, 1, 1])
    s, r = [v[0] for v in x.tolist()], [v[0] for v in ref.tolist()]
    # hardest positive / negative of each anchor by the student's distances:
    #   0: p 1 (d 1), n 2 (d 3);  1: p 0 (1), n 2 (2);  2: p 3 (4), n 1 (2);  3: p 2 (4), n 1 (6)
    mined = [(1, 2), (0, 2), (3, 1), (2, 1)]
    hand = 0.0
    for a, (p, n) in enumerate(mined):
        log_t = log_softmax([abs(s[a] - s[p]), abs(s[a] - s[n])])
        weights = softmax([abs(r[a] - r[p]), abs(r[a] - r[n])])
        hand -= sum(w * lt for w, lt in zip(weights, log_t))
    loss = soft_triplet_loss(x, y, ref)
    assert loss.item() == pytest.approx(hand / 4, rel=1e-5)
    loss.backward()
    assert x.grad.abs().sum() > 0


def test_soft_triplet_loss_with_a_separating_reference_is_the_soft_margin_triplet():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # a reference whose classes lie 1e4 apart: R = (0, 1) for every anchor
    ref = torch.zeros(8, 5)
    ref[:, 0] = 1e4 * y.float()
    assert float(soft_triplet_loss(x, y, ref)) == pytest.approx(
        float(triplet_loss(x, y, margin=0.0)), rel=1e-6)
    # the reference decides the weights: against itself (R = T) the loss is T's entropy
    d = torch.cdist(x, x)
    loss_self = float(soft_triplet_loss(x, y, x))
    entropies = []
    for a in range(8):
        pos = [j for j in range(8) if y[j] == y[a] and j != a]
        neg = [j for j in range(8) if y[j] != y[a]]
        ap, an = max(float(d[a, j]) for j in pos), min(float(d[a, j]) for j in neg)
        t = softmax([ap, an])
        entropies.append(-sum(v * math.log(v) for v in t))
    assert loss_self == pytest.approx(sum(entropies) / 8, rel=1e-5)


def test_soft_triplet_loss_leaves_out_anchors_without_a_positive():
    x = torch.tensor([[0.0], [1.0], [5.0]])
    y = torch.tensor([0, 0, 1])  # anchor 2 has no positive
    ref = torch.tensor([[0.0], [3.0], [4.0]])
    # anchor 0: p 1 (1), n 2 (5); ref distances 3, 4. anchor 1: p 0 (1), n 2 (4); ref 3, 1
    hand = -(sum(w * lt for w, lt in zip(softmax([3.0, 4.0]), log_softmax([1.0, 5.0])))
             + sum(w * lt for w, lt in zip(softmax([3.0, 1.0]), log_softmax([1.0, 4.0]))))
    assert float(soft_triplet_loss(x, y, ref)) == pytest.approx(hand / 2, rel=1e-5)
    assert float(soft_triplet_loss(x, torch.tensor([0, 1, 2]), ref)) == 0.0
    with pytest.raises(ValueError, match="reference rows"):
        soft_triplet_loss(x, y, ref[:2])
