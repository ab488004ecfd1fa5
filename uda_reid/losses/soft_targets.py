"""Losses against another model's soft predictions (Mutual Mean-Teaching, Ge et al., ICLR 2020,
equations 5 and 8): the targets come from a reference (a peer's mean teacher) and carry no
gradient. Shapes: logits (N, K), features (N, D), targets (N,).

Like :mod:`uda_reid.losses.functional`, everything is computed in float32 and, under
torch.distributed, each loss is this rank's share of the loss over the global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from uda_reid.losses.functional import batch_pairs, pair_masks, pairwise_distance
from uda_reid.utils.distributed import all_gather_rows, any_rank, batch_mean


def soft_cross_entropy(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """``-sum_k softmax(reference)_k log softmax(logits)_k``, batch mean (MMT's soft CE).

    logits (N, K) and reference_logits (N, K) -> scalar; no gradient reaches the reference."""
    if logits.shape != reference_logits.shape:
        raise ValueError(f"soft_cross_entropy: logits {tuple(logits.shape)} and reference "
                         f"{tuple(reference_logits.shape)} differ in shape")
    target = F.softmax(reference_logits.detach().float(), dim=1)
    return batch_mean(-(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1))


def soft_triplet_loss(features: torch.Tensor, targets: torch.Tensor,
                      reference: torch.Tensor) -> torch.Tensor:
    """MMT's soft softmax-triplet loss over a PK batch.

    For each anchor, the hardest positive p and hardest negative n are mined on the euclidean
    distances of ``features`` (N, D); with ``T = softmax(d_ap, d_an)`` of those distances and
    ``R`` the same softmax of the ``reference`` (N, D) features' distances between the same
    anchor, p and n (no gradient), the loss is ``-sum_j R_j log T_j``, batch mean. A reference
    that separates perfectly (R = (0, 1)) gives the soft-margin triplet
    ``log(1 + exp(d_ap - d_an))``. Self-pairs are excluded; anchors without a positive or a
    negative in the batch are left out (a batch without any gives a zero loss).
    """
    if reference.shape[0] != features.shape[0]:
        raise ValueError(f"soft_triplet_loss: {features.shape[0]} features but "
                         f"{reference.shape[0]} reference rows")
    others, other_targets, offset = batch_pairs(features, targets)
    dist = pairwise_distance(features, False, others)
    ref = reference.detach().float()
    ref_dist = pairwise_distance(ref, False, all_gather_rows(ref))
    pos, neg = pair_masks(targets, other_targets, offset)
    valid = pos.any(1) & neg.any(1)
    if not any_rank(bool(valid.any())):
        return features.sum() * 0.0
    hardest_p = dist.detach().masked_fill(~pos, float("-inf")).argmax(dim=1, keepdim=True)
    hardest_n = dist.detach().masked_fill(~neg, float("inf")).argmin(dim=1, keepdim=True)
    pairs = torch.cat([hardest_p, hardest_n], dim=1)  # (N, 2)
    log_t = F.log_softmax(dist.gather(1, pairs), dim=1)
    r = F.softmax(ref_dist.gather(1, pairs), dim=1)
    return batch_mean(-(r * log_t).sum(dim=1)[valid])
