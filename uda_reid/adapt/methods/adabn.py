"""AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", 2016):
the source model's BatchNorm statistics are re-estimated on the unlabelled target images; no
weight changes. Also the worked example of README's "Adding a method": options, step and
method in one file.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
from torch import nn

from uda_reid.adapt.base import AdaptContext, AdaptMethod
from uda_reid.adapt.registry import METHODS
from uda_reid.config.sections.adapt import method_options
from uda_reid.data.loaders import build_shuffled_loader, per_rank_batch_size
from uda_reid.engine.trainer import BatchStream, TrainStep
from uda_reid.models.forward import forward_model

TRANSFORMS = ("test", "train")


@method_options("ADABN")
class AdaBNConfig:
    # True: forget the source statistics and average the target's over the whole run (the
    # paper's estimate); False: keep BatchNorm's running average starting from the source's.
    RESET: bool = True
    # Images the statistics are gathered on: "test" (the evaluation transform, as the model
    # will see target images at test time) or "train" (ADAPT's training augmentation).
    TRANSFORM: str = "test"


def batch_norms(model: nn.Module) -> List[nn.Module]:
    """Every BatchNorm layer of ``model`` (1d, 2d, 3d and SyncBatchNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class BatchNormStatisticsStep(TrainStep):
    """Forwards shuffled target batches in training mode without gradients, so that every
    BatchNorm layer updates its running statistics; returns no loss, so no weight moves.
    ``len`` = target images // batch size (one pass per epoch)."""

    def __init__(self, model: nn.Module, target: torch.utils.data.Dataset, batch_size: int,
                 reset: bool = True, num_workers: int = 0, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        norms = batch_norms(model)
        if not norms:
            raise ValueError("AdaBN needs a model with BatchNorm layers; this one has none")
        if reset:  # a cumulative average over every target batch of the run (momentum None)
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None
        self.batches = BatchStream(build_shuffled_loader(target, batch_size, num_workers, seed),
                                   device)
        self.num_batches = max(1, len(target) // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def begin_epoch(self, epoch: int) -> None:
        self.batches.begin_epoch(epoch)

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        batch = self.batches.next()
        with torch.no_grad():
            forward_model(model, {"images": batch["images"], "camids": batch["camids"]})
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])


@METHODS.register("adabn")
class AdaBN(AdaptMethod):
    """Target BatchNorm statistics (ADAPT.ADABN) over ADAPT.SOLVER.MAX_EPOCH passes."""

    def __init__(self, reset: bool = True, transform: str = "test") -> None:
        if transform not in TRANSFORMS:
            raise ValueError(f"ADAPT.ADABN.TRANSFORM must be one of {TRANSFORMS}, "
                             f"got {transform!r}")
        self.reset, self.transform = reset, transform

    @classmethod
    def from_config(cls, adapt) -> "AdaBN":
        return cls(adapt.ADABN.RESET, adapt.ADABN.TRANSFORM)

    def build_step(self, ctx: AdaptContext) -> BatchNormStatisticsStep:
        s = ctx.settings
        transform = s.test_transform if self.transform == "test" else s.train_transform
        return BatchNormStatisticsStep(
            ctx.model, ctx.target.dataset(transform),
            per_rank_batch_size(s.batch_size, "ADAPT.SOLVER.IMS_PER_BATCH"), self.reset,
            s.num_workers, s.seed, ctx.device)
