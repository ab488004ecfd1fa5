"""Loss functions (pure math). Shapes: logits (N, K), features (N, D), targets (N,).

Everything is computed in float32 whatever the input dtype (AMP), so that distances, masks and
log-sum-exps do not overflow in half precision.

Under torch.distributed each loss is this rank's share of the loss over the global batch: means
are taken over every rank's samples (:func:`batch_mean`) and the pair losses compare this
rank's anchors with every rank's samples, so that the averaged gradients are those of one
process holding the whole batch.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from uda_reid.config.sections.model import CircleConfig, TripletConfig
from uda_reid.utils.distributed import all_gather_rows, any_rank, batch_mean, gather_rows_with_grad


def cross_entropy_smooth(logits: torch.Tensor, targets: torch.Tensor,
                         epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - eps) * onehot + eps / K`` (Szegedy et al.; BoT), batch mean.

    logits (N, K), targets (N,) -> scalar."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    k = logits.shape[1]
    smooth = torch.full_like(log_probs, epsilon / k)
    smooth.scatter_(1, targets[:, None], 1 - epsilon + epsilon / k)
    return batch_mean(-(smooth * log_probs).sum(dim=1))


def pairwise_distance(features: torch.Tensor, cosine: bool = False,
                      others: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, D) -> (N, M) euclidean distances to ``others`` (M, D) (default: ``features``);
    with ``cosine``, ``2 - 2 cos`` (the squared euclidean distance of L2-normalised features,
    FastReID's cosine distance, so triplet margins of FastReID recipes keep their meaning)."""
    f = features.float()
    g = f if others is None else others.float()
    if cosine:
        f = F.normalize(f, dim=1)
        g = f if others is None else F.normalize(g, dim=1)
        return 2 - 2 * f @ g.t()
    sq_f = (f ** 2).sum(1)
    sq_g = sq_f if others is None else (g ** 2).sum(1)
    d2 = sq_f[:, None] + sq_g[None, :] - 2 * f @ g.t()
    return d2.clamp(min=1e-12).sqrt()


def pair_masks(targets: torch.Tensor, others: Optional[torch.Tensor] = None,
               offset: int = 0) -> tuple:
    """targets (N,) against ``others`` (M,) (default: ``targets``) -> (positive, negative)
    boolean masks (N, N); self-pairs (anchor i and ``others[offset + i]``) are neither."""
    others = targets if others is None else others
    same = targets[:, None] == others[None, :]
    eye = torch.zeros_like(same)
    rows = torch.arange(len(targets), device=targets.device)
    eye[rows, rows + offset] = True
    return same & ~eye, ~same


def batch_pairs(features: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The samples this rank's anchors (features (N, D), targets (N,)) are compared with:
    every rank's (M, D) features (differentiable) and (M,) targets, and where this rank's own
    rows start among them; in one process the batch itself and 0."""
    others, offset = gather_rows_with_grad(features)
    return others, all_gather_rows(targets), offset


def triplet_loss(features: torch.Tensor, targets: torch.Tensor,
                 margin: float = TripletConfig.MARGIN,
                 hard_mining: bool = TripletConfig.HARD_MINING,
                 cosine: bool = TripletConfig.NORM_FEAT) -> torch.Tensor:
    """Triplet loss over a PK batch (Hermans et al.). features (N, D), targets (N,) -> scalar.

    ``hard_mining``: farthest positive and closest negative per anchor; otherwise positives
    weighted by ``softmax(d)`` and negatives by ``softmax(-d)`` (FastReID's weighted mining,
    without the anchor among its positives). ``margin > 0``: ``[d_ap - d_an + margin]_+``;
    ``margin == 0``: soft margin ``log(1 + exp(d_ap - d_an))``. Anchors without a positive or
    a negative in the batch are left out (a batch without any gives a zero loss).
    """
    others, other_targets, offset = batch_pairs(features, targets)
    dist = pairwise_distance(features, cosine, others)
    pos, neg = pair_masks(targets, other_targets, offset)
    if hard_mining:
        d_ap = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
        d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    else:
        w_ap = torch.softmax(dist.masked_fill(~pos, float("-inf")), dim=1)
        w_an = torch.softmax((-dist).masked_fill(~neg, float("-inf")), dim=1)
        d_ap = (w_ap.nan_to_num() * dist).sum(1)
        d_an = (w_an.nan_to_num() * dist).sum(1)
    valid = pos.any(1) & neg.any(1)
    if not any_rank(bool(valid.any())):
        return features.sum() * 0.0
    gap = (d_ap - d_an)[valid]
    return batch_mean(F.relu(gap + margin) if margin > 0 else F.softplus(gap))


def circle_loss(features: torch.Tensor, targets: torch.Tensor,
                margin: float = CircleConfig.MARGIN, gamma: float = CircleConfig.GAMMA
                ) -> torch.Tensor:
    """Pairwise circle loss (Sun et al., CVPR 2020) on cosine similarities of a batch.

    Per anchor: ``softplus(logsumexp_p(-g a_p (s_p - 1 + m)) + logsumexp_n(g a_n (s_n - m)))``
    with ``a_p = [1 + m - s_p]_+``, ``a_n = [s_n + m]_+`` (no gradient through the weights);
    self-pairs excluded; mean over anchors with a positive and a negative (zero if none).
    features (N, D), targets (N,) -> scalar.
    """
    others, other_targets, offset = batch_pairs(features, targets)
    f = F.normalize(features.float(), dim=1)
    g = f if others is features else F.normalize(others.float(), dim=1)
    sim = f @ g.t()
    pos, neg = pair_masks(targets, other_targets, offset)
    alpha_p = F.relu(1 + margin - sim.detach())
    alpha_n = F.relu(sim.detach() + margin)
    logit_p = (-gamma * alpha_p * (sim - (1 - margin))).masked_fill(~pos, float("-inf"))
    logit_n = (gamma * alpha_n * (sim - margin)).masked_fill(~neg, float("-inf"))
    valid = pos.any(1) & neg.any(1)
    if not any_rank(bool(valid.any())):
        return features.sum() * 0.0
    lse = torch.logsumexp(logit_p[valid], dim=1) + torch.logsumexp(logit_n[valid], dim=1)
    return batch_mean(F.softplus(lse))
