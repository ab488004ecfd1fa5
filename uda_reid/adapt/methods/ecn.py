"""ECN (Zhong et al., CVPR 2019): source cross-entropy plus exemplar / camera / neighbourhood
invariance over an exemplar memory of the target training images."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from uda_reid.adapt.invariance import invariance_loss, use_neighbors
from uda_reid.adapt.memory import ExemplarMemory, momentum_schedule

SourceLoss = Callable[[Dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _global(value):
    """The global output when a model returns ``[global, local_1, ...]``."""
    return value[0] if isinstance(value, (list, tuple)) else value


def cross_entropy_on_logits(outputs: Dict[str, torch.Tensor], pids: torch.Tensor) -> torch.Tensor:
    """ECN's source loss: plain cross-entropy of the source classifier."""
    return nn.functional.cross_entropy(_global(outputs["logits"]), pids)


class ECNObjective(nn.Module):
    """ECN's per-iteration loss with its exemplar memory (a buffer, checkpointed with this
    module). Call :meth:`forward` for the loss, then :meth:`update_memory` after the
    optimiser step."""

    def __init__(self, memory: ExemplarMemory, source_loss: SourceLoss = cross_entropy_on_logits,
                 lam: float = 0.3, temperature: float = 0.05, knn: int = 6,
                 neighbor_start_epoch: int = 5, momentum_per_epoch: float = 0.01) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"ADAPT.ECN.LAMBDA must lie in [0, 1], got {lam}")
        self.memory = memory
        self.source_loss = source_loss
        self.lam = lam
        self.temperature = temperature
        self.knn = knn
        self.neighbor_start_epoch = neighbor_start_epoch
        self.momentum_per_epoch = momentum_per_epoch
        self._pending: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def forward(self, model: nn.Module, source: Dict[str, torch.Tensor],
                target: Dict[str, torch.Tensor], epoch: int) -> Dict[str, torch.Tensor]:
        """Weighted losses ``loss_source``, ``loss_target`` (their sum is ECN's total loss) and
        detached monitoring scalars. source/target: batches with ``images`` (B, 3, H, W)."""
        out_s = model(source["images"])
        loss_s = self.source_loss(out_s, source["pids"])
        out_t = model(target["images"])
        feats = _global(out_t["embedding"])
        indexes = target["indexes"].to(feats.device)
        sims = self.memory.similarities(feats)
        neighbors = use_neighbors(epoch, self.neighbor_start_epoch)
        loss_t = invariance_loss(sims, indexes, self.temperature, self.knn, neighbors)
        self._pending = (feats.detach(), indexes)
        with torch.no_grad():
            own = sims.gather(1, indexes.view(-1, 1)).squeeze(1)
            accuracy = (_global(out_s["logits"]).argmax(1) == source["pids"]).float().mean()
        return {"loss_source": (1.0 - self.lam) * loss_s, "loss_target": self.lam * loss_t,
                "stat_source_ce": loss_s.detach(), "stat_target_inv": loss_t.detach(),
                "stat_source_acc": accuracy, "stat_own_slot_sim": own.mean(),
                "stat_neighbors": torch.tensor(float(neighbors))}

    @torch.no_grad()
    def update_memory(self, epoch: int) -> None:
        """Write the last forward's target features into their slots (after the step)."""
        if self._pending is None:
            raise RuntimeError("update_memory() called without a preceding forward()")
        feats, indexes = self._pending
        self._pending = None
        self.memory.update(feats, indexes, momentum_schedule(epoch, self.momentum_per_epoch))
