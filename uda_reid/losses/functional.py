"""Loss functions (pure math). Shapes: logits (N, K), features (N, D), targets (N,)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_smooth(logits: torch.Tensor, targets: torch.Tensor,
                         epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - eps) * onehot + eps / K`` (Szegedy et al.), batch mean."""
    log_probs = F.log_softmax(logits, dim=1)
    k = logits.shape[1]
    smooth = torch.full_like(log_probs, epsilon / k)
    smooth.scatter_(1, targets[:, None], 1 - epsilon + epsilon / k)
    return -(smooth * log_probs).sum(dim=1).mean()


def pairwise_distance(features: torch.Tensor, cosine: bool = False) -> torch.Tensor:
    """(N, D) -> (N, N): euclidean distances, or ``1 - cos`` when ``cosine``."""
    if cosine:
        f = F.normalize(features, dim=1)
        return 1 - f @ f.t()
    sq = (features ** 2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * features @ features.t()
    return d2.clamp(min=1e-12).sqrt()


def triplet_loss(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.3,
                 hard_mining: bool = True, cosine: bool = False) -> torch.Tensor:
    """Triplet loss over a PK batch (Hermans et al.).

    ``hard_mining``: hardest positive and hardest negative per anchor; otherwise softmax-
    weighted positives/negatives (FastReID's weighted mining, but without the anchor itself
    among its positives). ``margin > 0``:
    ``[d_ap - d_an + margin]_+``; ``margin == 0``: soft margin ``log(1 + exp(d_ap - d_an))``.
    """
    dist = pairwise_distance(features, cosine)
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=dist.device)
    pos_mask, neg_mask = (same & ~eye).float(), (~same).float()
    if hard_mining:
        d_ap = (dist - 1e6 * (1 - pos_mask)).amax(dim=1)
        d_an = (dist + 1e6 * (1 - neg_mask)).amin(dim=1)
    else:
        w_ap = torch.softmax(dist * pos_mask - 1e6 * (1 - pos_mask), dim=1) * pos_mask
        w_an = torch.softmax(-dist * neg_mask - 1e6 * (1 - neg_mask), dim=1) * neg_mask
        d_ap, d_an = (w_ap * dist).sum(1), (w_an * dist).sum(1)
    if margin > 0:
        return F.relu(d_ap - d_an + margin).mean()
    return F.softplus(d_ap - d_an).mean()


def circle_loss(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.25,
                gamma: float = 128.0) -> torch.Tensor:
    """Pairwise circle loss (Sun et al., CVPR 2020) on cosine similarities of a batch.

    Per anchor: ``softplus(logsumexp_p(-g a_p (s_p - 1 + m)) + logsumexp_n(g a_n (s_n - m)))``
    with ``a_p = [1 + m - s_p]_+``, ``a_n = [s_n + m]_+``; self-pairs excluded; batch mean.
    """
    f = F.normalize(features, dim=1)
    sim = f @ f.t()
    n = sim.shape[0]
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    pos, neg = same & ~eye, ~same
    alpha_p = F.relu(1 + margin - sim.detach())
    alpha_n = F.relu(sim.detach() + margin)
    logit_p = -gamma * alpha_p * (sim - (1 - margin))
    logit_n = gamma * alpha_n * (sim - margin)
    big = torch.finfo(sim.dtype).max / 4
    lse_p = torch.logsumexp(torch.where(pos, logit_p, -big), dim=1)
    lse_n = torch.logsumexp(torch.where(neg, logit_n, -big), dim=1)
    valid = pos.any(1) & neg.any(1)
    return F.softplus(lse_p + lse_n)[valid].mean()
