"""SpCL's hybrid memory (Ge et al., "Self-paced Contrastive Learning with Hybrid Memory for
Domain Adaptive Object Re-ID", NeurIPS 2020; official code yxgeee/SpCL spcl/models/hm.py).

``S + N`` l2-normalised slots: the S source class centroids, then one feature per target
training image. Every slot belongs to a *group*: source class ``s`` is group ``s``; the target
slots of a pseudo-label cluster share one group; an un-clustered target instance is a group of
its own. A feature's logit for a group is its mean similarity to the group's slots over the
temperature, i.e. its similarity to the group's (unnormalised) mean feature: the source class
centroid, the target cluster centroid or the instance itself. The unified contrastive loss is
the cross-entropy of these logits with the group of the feature's own slot (a source image's
class, a target image's own slot). After each optimiser step the batch's slots move towards
its features by momentum and are re-normalised.

As in the official code, 1e-6 is added to the softmax denominator and to the probability
inside the log (it bounds a sample's loss by -log 1e-6 = 13.8); the loss is computed in log
space.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.adapt.cluster_memory import mean_update
from uda_reid.adapt.clustering import apply_outlier_policy
from uda_reid.utils.distributed import all_gather_rows

OFFICIAL_SMOOTHING = 1e-6  # yxgeee/SpCL spcl/models/hm.py masked_softmax epsilon and log(p + 1e-6)


def hybrid_contrastive_loss(features: torch.Tensor, slots: torch.Tensor, bank: torch.Tensor,
                            groups: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of ``-log(p + s)`` with ``p = exp(z_y) / (sum_g exp(z_g) + s)``,
    ``z_g = mean_{k in g} normalise(f) . bank_k / tau``, y the group of the sample's slot and
    ``s`` = OFFICIAL_SMOOTHING. Computed in log space.

    features: (B, D); slots: (B,) slot of each sample; bank: (M, D) slots (constants, no
    gradient); groups: (M,) group of each slot in 0..G-1 (a group without slots takes no part).
    """
    sims = F.normalize(features, dim=1).mm(bank.detach().t()) / temperature  # (B, M)
    num_groups = int(groups.max()) + 1
    counts = torch.bincount(groups, minlength=num_groups).to(sims.dtype)
    sums = sims.new_zeros(len(sims), num_groups).index_add_(1, groups, sims)
    logits = (sums / counts.clamp(min=1)).masked_fill(counts == 0, float("-inf"))
    log_s = math.log(OFFICIAL_SMOOTHING)
    denominator = torch.logaddexp(torch.logsumexp(logits, dim=1), sims.new_tensor(log_s))
    log_p = logits.gather(1, groups[slots].unsqueeze(1)).squeeze(1) - denominator
    return -torch.logaddexp(log_p, sims.new_tensor(log_s)).mean()


def target_groups(labels: np.ndarray, num_source: int) -> torch.Tensor:
    """(N,) groups of the target slots from pseudo-labels (N,) in 0..C-1 (-1: un-clustered):
    cluster c is group ``S + c``, each un-clustered instance a group after the clusters."""
    return torch.from_numpy(apply_outlier_policy(labels, "singleton")) + num_source


class HybridMemory(nn.Module):
    """The (S + N, D) slots and their (S + N,) groups as buffers (checkpointed).

    ``initialise`` fills the slots, ``set_target_labels`` regroups the target slots each round,
    ``forward(features, slots)`` is the loss, :meth:`update` the momentum update."""

    def __init__(self, num_features: int, num_source: int, num_target: int,
                 temperature: float = 0.05, momentum: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"ADAPT.SPCL.MOMENTUM must lie in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"ADAPT.SPCL.TEMPERATURE must be > 0, got {temperature}")
        self.num_source, self.num_target = num_source, num_target
        self.temperature, self.momentum = temperature, momentum
        self.register_buffer("features", torch.zeros(num_source + num_target, num_features))
        self.register_buffer("groups", torch.arange(num_source + num_target))

    @torch.no_grad()
    def initialise(self, source_centroids: torch.Tensor, target_features: torch.Tensor) -> None:
        """Slots from the (S, D) source class centroids and the (N, D) target features (both
        l2-normalised here)."""
        expected = (self.num_source, self.num_target)
        if (len(source_centroids), len(target_features)) != expected:
            raise ValueError(f"HybridMemory holds {expected[0]} source and {expected[1]} target "
                             f"slots, got {len(source_centroids)} and {len(target_features)}")
        rows = torch.cat([source_centroids, target_features]).to(self.features)
        self.features.copy_(F.normalize(rows, dim=1))

    @property
    def target_features(self) -> torch.Tensor:
        """(N, D) the target instance slots."""
        return self.features[self.num_source:]

    @torch.no_grad()
    def set_target_labels(self, labels: np.ndarray) -> None:
        """Regroup the target slots by pseudo-labels (N,) (-1: un-clustered instance)."""
        if len(labels) != self.num_target:
            raise ValueError(f"{len(labels)} labels for {self.num_target} target slots")
        self.groups[self.num_source:] = target_groups(labels, self.num_source).to(self.groups)

    def forward(self, features: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Unified contrastive loss of features (B, D) whose own slots are ``slots`` (B,)
        (a source class in 0..S-1, or ``S + i`` for target image i)."""
        return hybrid_contrastive_loss(features, slots, self.features, self.groups,
                                       self.temperature)

    @torch.no_grad()
    def update(self, features: torch.Tensor, slots: torch.Tensor) -> None:
        """``slot <- normalise(m slot + (1 - m) normalise(f))`` for each (f, slot) in batch
        order; under torch.distributed every rank applies every rank's pairs in rank order, so
        the memories stay identical."""
        features = all_gather_rows(features.detach())
        slots = all_gather_rows(slots.to(self.features.device))
        self.features.copy_(mean_update(self.features, features, slots, self.momentum))

