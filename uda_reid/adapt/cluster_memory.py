"""Cluster Contrast's cluster-level memory (Dai et al., "Cluster Contrast for Unsupervised
Person Re-Identification"; official code alibaba/cluster-contrast-reid,
clustercontrast/models/cm.py).

One l2-normalised centroid per pseudo-label cluster, re-initialised from the cluster means of
the current features every round. A batch's loss is the InfoNCE of its l2-normalised features
against all centroids (temperature ``tau``); after the optimiser step the centroids of the
batch's clusters move towards the batch's features by momentum and are re-normalised:
``mean`` moves a centroid towards each of its samples in batch order, ``hardest`` towards the
one sample of the batch least similar to it.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.adapt.memory import occurrence_rank

UPDATE_MODES = ("mean", "hardest")


def memory_contrastive_loss(features: torch.Tensor, labels: torch.Tensor,
                            centroids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of ``-log softmax(normalise(f) . C^T / tau)[label]``.

    features: (B, D); labels: (B,) cluster ids in [0, K); centroids: (K, D) (read as
    constants, no gradient)."""
    logits = F.normalize(features, dim=1).mm(centroids.detach().t()) / temperature
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def mean_update(centroids: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                momentum: float) -> torch.Tensor:
    """``c[y] <- normalise(m c[y] + (1 - m) f)`` for each (f, y) in batch order (a cluster seen
    twice is updated twice). Returns the new (K, D) centroids; features are normalised first."""
    out = centroids.clone()
    x = F.normalize(features.detach().to(out.dtype), dim=1)
    rank = occurrence_rank(labels)
    for r in range(int(rank.max()) + 1 if rank.numel() else 0):
        pick = rank == r  # the r-th occurrences: distinct clusters
        ys = labels[pick]
        out[ys] = F.normalize(momentum * out[ys] + (1.0 - momentum) * x[pick], dim=1)
    return out


@torch.no_grad()
def hardest_update(centroids: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                   momentum: float) -> torch.Tensor:
    """For each cluster y in the batch, ``c[y] <- normalise(m c[y] + (1 - m) f_h)`` with f_h
    its sample least similar (inner product) to ``c[y]``. Returns the new (K, D) centroids."""
    out = centroids.clone()
    x = F.normalize(features.detach().to(out.dtype), dim=1)
    sims = (x * out[labels]).sum(dim=1)  # (B,) similarity to the own centroid
    ys = torch.unique(labels)
    # per cluster, the batch row with the smallest similarity (first one on ties)
    big = torch.full((len(ys), len(labels)), float("inf"), dtype=sims.dtype, device=sims.device)
    member = labels.unsqueeze(0) == ys.unsqueeze(1)  # (U, B)
    hardest = torch.where(member, sims.unsqueeze(0).expand_as(big), big).argmin(dim=1)
    out[ys] = F.normalize(momentum * out[ys] + (1.0 - momentum) * x[hardest], dim=1)
    return out


class ClusterMemory(nn.Module):
    """The (K, D) centroids as a buffer (checkpointed; K changes each round, and loading a
    state resizes the buffer). ``forward`` is the loss; :meth:`update` the momentum update."""

    def __init__(self, num_features: int, temperature: float = 0.05, momentum: float = 0.2,
                 mode: str = "mean") -> None:
        super().__init__()
        if mode not in UPDATE_MODES:
            raise ValueError(f"ADAPT.CC.MODE must be one of {UPDATE_MODES}, got {mode!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"ADAPT.CC.MOMENTUM must lie in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"ADAPT.CC.TEMPERATURE must be > 0, got {temperature}")
        self.temperature, self.momentum, self.mode = temperature, momentum, mode
        self.register_buffer("centroids", torch.zeros(0, num_features))

    @property
    def num_clusters(self) -> int:
        return self.centroids.shape[0]

    @torch.no_grad()
    def reset(self, centroids: torch.Tensor) -> None:
        """New round: the l2-normalised (K, D) cluster means."""
        if centroids.dim() != 2 or centroids.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"centroids must be (K, {self.centroids.shape[1]}), "
                             f"got {tuple(centroids.shape)}")
        self.centroids = F.normalize(centroids.to(self.centroids), dim=1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Contrastive loss of features (B, D) with cluster labels (B,)."""
        if self.num_clusters == 0:
            raise RuntimeError("ClusterMemory used before reset()")
        return memory_contrastive_loss(features, labels, self.centroids, self.temperature)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        fn = mean_update if self.mode == "mean" else hardest_update
        self.centroids = fn(self.centroids, features, labels, self.momentum)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args) -> None:
        key = prefix + "centroids"
        if key in state_dict:
            self.centroids = torch.empty_like(state_dict[key]).to(self.centroids)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def stats(self) -> Dict[str, float]:
        return {"clusters": float(self.num_clusters)}
