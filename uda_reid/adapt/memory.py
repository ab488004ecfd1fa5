"""ECN's exemplar memory: one l2-normalised feature slot per target training image.

Zhong et al., "Invariance Matters: Exemplar Memory for Domain Adaptive Person
Re-identification", CVPR 2019. The slots start at zero; the loss of a step reads the current
slots (:meth:`ExemplarMemory.similarities`) and, once the optimiser has stepped, the batch's
features are written into their slots (:meth:`ExemplarMemory.update`), exactly as the
original's autograd function does in its backward pass.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.utils.distributed import all_gather_rows


def momentum_schedule(epoch: int, per_epoch: float = 0.01) -> float:
    """ECN's update rate ``alpha = per_epoch * epoch`` for a 0-based epoch (0 at epoch 0)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return per_epoch * epoch


def _occurrence_rank(indexes: torch.Tensor) -> torch.Tensor:
    """For each position, how many earlier positions hold the same index. (B,) -> (B,)."""
    same = indexes.unsqueeze(0) == indexes.unsqueeze(1)  # (B, B)
    earlier = torch.ones_like(same).tril(diagonal=-1)
    return (same & earlier).sum(dim=1)


class ExemplarMemory(nn.Module):
    """A ``(num_samples, num_features)`` buffer of slots, zero-initialised.

    It is a buffer, so it is saved and restored with the module's ``state_dict`` and moves with
    ``.to(device)``; no optimiser ever sees it.
    """

    def __init__(self, num_samples: int, num_features: int) -> None:
        super().__init__()
        if num_samples <= 0 or num_features <= 0:
            raise ValueError(f"ExemplarMemory needs positive sizes, got num_samples={num_samples},"
                             f" num_features={num_features}")
        self.register_buffer("slots", torch.zeros(num_samples, num_features))

    @property
    def num_samples(self) -> int:
        return self.slots.shape[0]

    @property
    def num_features(self) -> int:
        return self.slots.shape[1]

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Inner products with every slot: (B, D) -> (B, num_samples).

        The gradient flows to ``features`` only (the slots are a buffer, read as constants).
        """
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"features must be (B, {self.num_features}), "
                             f"got {tuple(features.shape)}")
        return features.mm(self.slots.detach().t())

    @torch.no_grad()
    def update(self, features: torch.Tensor, indexes: torch.Tensor, momentum: float) -> None:
        """``m[i] <- normalise(momentum * m[i] + (1 - momentum) * f)`` for each (f, i) pair.

        features: (B, D); indexes: (B,) slot ids. Pairs are applied in batch order, so an index
        that occurs twice is updated twice, the second time from the first result (as the
        original's per-sample loop does). Vectorised by occurrence: the k-th occurrences of
        all indexes form one round of distinct slots.

        Under torch.distributed every rank applies every rank's pairs, in rank order (the
        order of the global batch), so the memories stay identical.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"memory momentum must lie in [0, 1], got {momentum}")
        if indexes.dim() != 1 or indexes.shape[0] != features.shape[0]:
            raise ValueError(f"indexes must be (B,) with B={features.shape[0]}, "
                             f"got {tuple(indexes.shape)}")
        features = all_gather_rows(features.detach()).to(self.slots.dtype)
        indexes = all_gather_rows(indexes.to(self.slots.device))
        if indexes.numel() and (indexes.min() < 0 or indexes.max() >= self.num_samples):
            raise IndexError(f"memory indexes must lie in [0, {self.num_samples}), got "
                             f"[{int(indexes.min())}, {int(indexes.max())}]")
        rank = _occurrence_rank(indexes)
        for r in range(int(rank.max()) + 1 if rank.numel() else 0):
            pick = rank == r
            slots = indexes[pick]
            mixed = momentum * self.slots[slots] + (1.0 - momentum) * features[pick]
            self.slots[slots] = F.normalize(mixed, dim=1, eps=1e-12)

    @torch.no_grad()
    def stats(self) -> Dict[str, float]:
        """Scalars for monitoring: fraction of written slots and mean slot norm."""
        norms = self.slots.norm(dim=1)
        return {"filled": float((norms > 0).float().mean()), "mean_norm": float(norms.mean())}
