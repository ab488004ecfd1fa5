"""ECN's invariance losses over the exemplar memory (Zhong et al., CVPR 2019).

* exemplar invariance: each target image is its own class; the logits are the similarities to
  all memory slots divided by a temperature (0.05), the loss is cross-entropy to its own slot.
* neighbourhood invariance (from ECN's epoch 5 on): soft targets put weight ``1/k`` on the
  ``k`` most similar slots (possibly including the image's own slot) and then weight 1 on the
  own slot, exactly as the original ``smooth_hot`` does; loss ``-sum(t * log_softmax)``
  averaged over the batch.
* camera invariance is not a loss of its own: the target image fed to these losses is a random
  camera-style version of it (see :mod:`uda_reid.adapt.camstyle_data`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def use_neighbors(epoch: int, start_epoch: int = 5) -> bool:
    """Whether neighbourhood invariance is on at 0-based ``epoch`` (original: ``epoch > 4``)."""
    return epoch >= start_epoch


def neighbor_soft_targets(logits: torch.Tensor, indexes: torch.Tensor, knn: int) -> torch.Tensor:
    """ECN's soft targets: (B, N) logits, (B,) own indexes -> (B, N) target weights.

    The top-``knn`` columns of each row get ``1/knn`` (ECN's ``softmax`` of a row of ones), then
    the own column is set to 1 (whether or not it was among the top ``knn``).
    """
    if not 0 < knn <= logits.shape[1]:
        raise ValueError(f"knn must lie in [1, {logits.shape[1]}], got {knn}")
    top = logits.detach().topk(knn, dim=1).indices  # (B, knn)
    targets = torch.zeros_like(logits, dtype=logits.dtype)
    targets.scatter_(1, top, 1.0 / knn)
    targets.scatter_(1, indexes.view(-1, 1), 1.0)
    return targets


def invariance_loss(similarities: torch.Tensor, indexes: torch.Tensor, temperature: float = 0.05,
                    knn: int = 6, neighbors: bool = False) -> torch.Tensor:
    """ECN's target loss: (B, N) memory similarities, (B,) own slot indexes -> scalar.

    ``neighbors=False`` (or ``knn=0``): exemplar invariance, ``CE(similarities / temperature,
    indexes)``. ``neighbors=True``: neighbourhood invariance with :func:`neighbor_soft_targets`.
    """
    if similarities.dim() != 2 or indexes.shape != similarities.shape[:1]:
        raise ValueError(f"similarities must be (B, N) and indexes (B,), got "
                         f"{tuple(similarities.shape)} and {tuple(indexes.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = similarities / temperature
    if not neighbors or knn <= 0:
        return F.cross_entropy(logits, indexes)
    targets = neighbor_soft_targets(logits, indexes, knn)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()

