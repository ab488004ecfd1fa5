"""Losses against hand computations on crafted batches."""
import math

import pytest
import torch

from uda_reid.config import load_config
from uda_reid.losses import build_loss_fn, circle_loss, cross_entropy_smooth, triplet_loss


def test_label_smoothed_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([0, 2])
    eps = 0.1
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        z = math.log(sum(math.exp(v) for v in row))
        logp = [v - z for v in row]
        q = [eps / 3 + (1 - eps if j == t else 0) for j in range(3)]
        total += -sum(qj * lj for qj, lj in zip(q, logp))
    assert cross_entropy_smooth(logits, targets, eps).item() == pytest.approx(total / 2, abs=1e-6)
    assert torch.allclose(cross_entropy_smooth(logits, targets, 0.0),
                          torch.nn.functional.cross_entropy(logits, targets))


def test_batch_hard_triplet_picks_hardest_pairs():
    # 1-D features: ids 0 at {0, 1}, ids 1 at {3, 10}
    f = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    y = torch.tensor([0, 0, 1, 1])
    # (d_ap, d_an) per anchor: (1, 3) -> 0, (1, 2) -> 0, (7, 2) -> 5.3, (7, 9) -> 0
    want = (0 + 0 + (7 - 2 + 0.3) + 0) / 4
    assert triplet_loss(f, y, margin=0.3).item() == pytest.approx(want, abs=1e-4)
    soft = [math.log1p(math.exp(a - n)) for a, n in ((1, 3), (1, 2), (7, 2), (7, 9))]
    assert triplet_loss(f, y, margin=0.0).item() == pytest.approx(sum(soft) / 4, abs=1e-4)


def test_weighted_triplet_with_cosine_distance_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 1, 1])
    # cosine distance 2 - 2 cos: orthogonal pairs 2, opposite pairs 4
    # anchor 0: positive 1 (d=2); negatives 2 (d=4), 3 (d=2), weighted by softmax(-d)
    w = [math.exp(-4) / (math.exp(-4) + math.exp(-2)), math.exp(-2) / (math.exp(-4) + math.exp(-2))]
    d_an = 4 * w[0] + 2 * w[1]
    want = max(2 - d_an + 0.3, 0)
    got = triplet_loss(f, y, margin=0.3, hard_mining=False, cosine=True)
    assert got.item() == pytest.approx(want, abs=1e-4)  # symmetric: every anchor alike


def test_weighted_triplet_softmax_weights_over_several_positives():
    f = torch.tensor([[0.0], [1.0], [3.0], [5.0], [6.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    dist = (f - f.t()).abs().tolist()
    total = 0.0
    for i in range(5):
        pos = [dist[i][j] for j in range(5) if j != i and y[j] == y[i]]
        neg = [dist[i][j] for j in range(5) if y[j] != y[i]]
        d_ap = sum(d * math.exp(d) for d in pos) / sum(math.exp(d) for d in pos)
        d_an = sum(d * math.exp(-d) for d in neg) / sum(math.exp(-d) for d in neg)
        total += max(d_ap - d_an + 0.3, 0)
    got = triplet_loss(f, y, margin=0.3, hard_mining=False)
    assert got.item() == pytest.approx(total / 5, abs=1e-4)


def test_triplet_leaves_out_anchors_without_positives():
    f = torch.tensor([[0.0], [1.0], [3.0], [10.0], [4.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # id 2 has one image: not an anchor
    # anchors 0, 1: d_ap 1, d_an 3 / 2 -> 0 ; anchor 2: 7 vs 1 (to id 2) ; anchor 3: 7 vs 6
    want = (0 + 0 + (7 - 1 + 0.3) + (7 - 6 + 0.3)) / 4
    assert triplet_loss(f, y, margin=0.3).item() == pytest.approx(want, abs=1e-4)
    singles = f[:3].clone().requires_grad_()
    lonely = triplet_loss(singles, torch.tensor([0, 1, 2]))
    lonely.backward()
    assert lonely.item() == 0.0 and torch.equal(singles.grad, torch.zeros(3, 1))


def test_losses_accept_half_precision_inputs_and_compute_in_float32():
    torch.manual_seed(0)
    f, y = torch.randn(8, 16) * 30, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = torch.randn(8, 4) * 50
    for fn, args in ((triplet_loss, (f, y)), (circle_loss, (f, y)),
                     (cross_entropy_smooth, (logits, y))):
        half = fn(*(a.bfloat16() if a.is_floating_point() else a for a in args))
        full = fn(*(a.bfloat16().float() if a.is_floating_point() else a for a in args))
        assert half.dtype == torch.float32 and torch.isfinite(half)
        assert half.item() == pytest.approx(full.item(), rel=1e-4)


def test_circle_loss_by_hand_on_two_pairs():
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
    y = torch.tensor([0, 0, 1, 1])
    m, g = 0.25, 8.0
    sim = (f @ f.t()).tolist()
    total = 0.0
    for i in range(4):
        lp = [-g * max(1 + m - sim[i][j], 0) * (sim[i][j] - 1 + m)
              for j in range(4) if j != i and y[j] == y[i]]
        ln = [g * max(sim[i][j] + m, 0) * (sim[i][j] - m) for j in range(4) if y[j] != y[i]]
        lse = lambda v: math.log(sum(math.exp(a) for a in v))  # noqa: E731
        total += math.log1p(math.exp(lse(lp) + lse(ln)))
    assert circle_loss(f, y, m, g).item() == pytest.approx(total / 4, abs=1e-4)


def test_loss_computer_scales_and_combines_jpm_branches():
    cfg = load_config(None, ["MODEL.LOSSES.NAME", "[CrossEntropyLoss, TripletLoss]",
                             "MODEL.LOSSES.CE.SCALE", "2.0", "MODEL.LOSSES.CE.EPSILON", "0.0"])
    fn = build_loss_fn(cfg)
    torch.manual_seed(0)
    g, l1, l2 = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    feats = torch.randn(4, 5)
    out = fn({"logits": [g, l1, l2], "features": [feats, feats, feats]}, y)
    ce = torch.nn.functional.cross_entropy
    want = 2.0 * (0.5 * ce(g, y) + 0.5 * (ce(l1, y) + ce(l2, y)) / 2)
    assert out["loss_cls"].item() == pytest.approx(want.item(), abs=1e-5)
    assert out["loss_triplet"].item() == pytest.approx(triplet_loss(feats, y).item(), abs=1e-5)
    with pytest.raises(KeyError, match="No loss named"):
        build_loss_fn(load_config(None, ["MODEL.LOSSES.NAME", "[FocalLos]"]))


def test_loss_computer_names_missing_outputs_and_duplicate_losses():
    fn = build_loss_fn(load_config(None, ["MODEL.LOSSES.NAME", "[CircleLoss]",
                                          "MODEL.LOSSES.CIRCLE.SCALE", "0.5"]))
    y = torch.tensor([0, 0, 1, 1])
    feats = torch.randn(4, 5)
    assert fn({"features": feats}, y)["loss_circle"].item() == pytest.approx(
        0.5 * circle_loss(feats, y).item(), abs=1e-5)
    with pytest.raises(KeyError, match="CircleLoss needs the model output 'features'"):
        fn({"logits": torch.randn(4, 2)}, y)
    with pytest.raises(ValueError, match="lists a loss twice"):
        build_loss_fn(load_config(None, ["MODEL.LOSSES.NAME", "[TripletLoss, triplet]"]))
