"""Loss functions (pure math). Shapes: logits (N, K), features (N, D), targets (N,).

Everything is computed in float32 whatever the input dtype (AMP), so that distances, masks and
log-sum-exps do not overflow in half precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_smooth(logits: torch.Tensor, targets: torch.Tensor,
                         epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - eps) * onehot + eps / K`` (Szegedy et al.; BoT), batch mean.

    logits (N, K), targets (N,) -> scalar."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    k = logits.shape[1]
    smooth = torch.full_like(log_probs, epsilon / k)
    smooth.scatter_(1, targets[:, None], 1 - epsilon + epsilon / k)
    return -(smooth * log_probs).sum(dim=1).mean()


def pairwise_distance(features: torch.Tensor, cosine: bool = False) -> torch.Tensor:
    """(N, D) -> (N, N) euclidean distances; with ``cosine``, ``2 - 2 cos`` (the squared
    euclidean distance of L2-normalised features, FastReID's cosine distance, so triplet
    margins of FastReID recipes keep their meaning)."""
    f = features.float()
    if cosine:
        f = F.normalize(f, dim=1)
        return 2 - 2 * f @ f.t()
    sq = (f ** 2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * f @ f.t()
    return d2.clamp(min=1e-12).sqrt()


def pair_masks(targets: torch.Tensor) -> tuple:
    """targets (N,) -> (positive, negative) boolean masks (N, N); self-pairs are neither."""
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    return same & ~eye, ~same


def triplet_loss(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.3,
                 hard_mining: bool = True, cosine: bool = False) -> torch.Tensor:
    """Triplet loss over a PK batch (Hermans et al.). features (N, D), targets (N,) -> scalar.

    ``hard_mining``: farthest positive and closest negative per anchor; otherwise positives
    weighted by ``softmax(d)`` and negatives by ``softmax(-d)`` (FastReID's weighted mining,
    without the anchor among its positives). ``margin > 0``: ``[d_ap - d_an + margin]_+``;
    ``margin == 0``: soft margin ``log(1 + exp(d_ap - d_an))``. Anchors without a positive or
    a negative in the batch are left out (a batch without any gives a zero loss).
    """
    dist = pairwise_distance(features, cosine)
    pos, neg = pair_masks(targets)
    if hard_mining:
        d_ap = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
        d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    else:
        w_ap = torch.softmax(dist.masked_fill(~pos, float("-inf")), dim=1)
        w_an = torch.softmax((-dist).masked_fill(~neg, float("-inf")), dim=1)
        d_ap = (w_ap.nan_to_num() * dist).sum(1)
        d_an = (w_an.nan_to_num() * dist).sum(1)
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return features.sum() * 0.0
    gap = (d_ap - d_an)[valid]
    return F.relu(gap + margin).mean() if margin > 0 else F.softplus(gap).mean()


def circle_loss(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.25,
                gamma: float = 128.0) -> torch.Tensor:
    """Pairwise circle loss (Sun et al., CVPR 2020) on cosine similarities of a batch.

    Per anchor: ``softplus(logsumexp_p(-g a_p (s_p - 1 + m)) + logsumexp_n(g a_n (s_n - m)))``
    with ``a_p = [1 + m - s_p]_+``, ``a_n = [s_n + m]_+`` (no gradient through the weights);
    self-pairs excluded; mean over anchors with a positive and a negative (zero if none).
    features (N, D), targets (N,) -> scalar.
    """
    f = F.normalize(features.float(), dim=1)
    sim = f @ f.t()
    pos, neg = pair_masks(targets)
    alpha_p = F.relu(1 + margin - sim.detach())
    alpha_n = F.relu(sim.detach() + margin)
    logit_p = (-gamma * alpha_p * (sim - (1 - margin))).masked_fill(~pos, float("-inf"))
    logit_n = (gamma * alpha_n * (sim - margin)).masked_fill(~neg, float("-inf"))
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return features.sum() * 0.0
    lse = torch.logsumexp(logit_p[valid], dim=1) + torch.logsumexp(logit_n[valid], dim=1)
    return F.softplus(lse).mean()
