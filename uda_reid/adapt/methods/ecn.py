"""ECN (Zhong et al., CVPR 2019): source cross-entropy plus exemplar / camera / neighbourhood
invariance over an exemplar memory of the target training images."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from uda_reid.adapt.base import AdaptContext, AdaptMethod
from uda_reid.adapt.camstyle_data import (build_shuffled_loader, build_target_loader,
                                          check_camstyle_dir)
from uda_reid.adapt.freeze import FrozenNormsHook, freeze_modules
from uda_reid.adapt.guard import UnlabeledDataset
from uda_reid.adapt.invariance import invariance_loss, use_neighbors
from uda_reid.adapt.memory import ExemplarMemory, momentum_schedule
from uda_reid.adapt.registry import METHODS
from uda_reid.data.datasets import build_dataset_from_config
from uda_reid.data.loaders import (ImageDataset, build_train_loader_from_config, combine_train_sets,
                                   per_rank_batch_size)
from uda_reid.data.transforms import build_transforms_from_config
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import BatchStream, TrainStep, forward_model
from uda_reid.losses import build_loss_fn
from uda_reid.models.backbones.vit import side_info_domain

logger = logging.getLogger(__name__)

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
        out_s = forward_model(model, source)
        loss_s = self.source_loss(out_s, source["pids"])
        with side_info_domain(model, "target"):  # SIE backbones: the target's cameras
            out_t = forward_model(model, target)
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


class ECNStep(TrainStep):
    """One ECN iteration: a labelled source batch and a (camera-styled) target batch; the memory
    is written after the optimiser step. ``len`` = source batches per epoch."""

    def __init__(self, objective: ECNObjective, source_loader: Iterable, target_loader: Iterable,
                 device: torch.device | str = "cpu") -> None:
        self.objective = objective.to(device)
        self.source_loader = source_loader
        self.source = BatchStream(source_loader, device)
        self.target = BatchStream(target_loader, device)
        self.epoch = 0
        self._stats: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.source_loader)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.source.begin_epoch(epoch)
        self.target.begin_epoch(epoch)

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        out = self.objective(model, self.source.next(), self.target.next(), self.epoch)
        self._stats = {k[len("stat_"):]: v for k, v in out.items() if k.startswith("stat_")}
        return {k: v for k, v in out.items() if k.startswith("loss_")}

    def after_update(self, model: nn.Module) -> None:
        self.objective.update_memory(self.epoch)

    def scalars(self) -> Dict[str, float]:
        values = {k: float(v) for k, v in self._stats.items()}
        values.update({f"memory_{k}": v for k, v in self.objective.memory.stats().items()})
        values["memory_momentum"] = momentum_schedule(self.epoch,
                                                      self.objective.momentum_per_epoch)
        return values

    def state_dict(self) -> Dict[str, Any]:
        return {"objective": self.objective.state_dict(), "source": self.source.state_dict(),
                "target": self.target.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.objective.load_state_dict(state["objective"])
        self.source.load_state_dict(state.get("source", {}))
        self.target.load_state_dict(state.get("target", {}))


def build_source_loader(cfg) -> Iterable:
    """Source training batches: shuffled (``DATALOADER.SAMPLER random``, as the original) or
    identity-balanced (``pk``)."""
    if cfg.DATALOADER.SAMPLER == "pk":
        return build_train_loader_from_config(cfg)[0]
    if cfg.DATALOADER.SAMPLER != "random":
        raise ValueError(f"DATALOADER.SAMPLER must be 'pk' or 'random', "
                         f"got '{cfg.DATALOADER.SAMPLER}'")
    datasets = [build_dataset_from_config(cfg, name) for name in cfg.DATASETS.NAMES]
    dataset = ImageDataset(combine_train_sets(datasets), build_transforms_from_config(cfg, True))
    return build_shuffled_loader(dataset, per_rank_batch_size(cfg.SOLVER.IMS_PER_BATCH),
                                 cfg.DATALOADER.NUM_WORKERS, cfg.SEED)


@METHODS.register("ecn")
class ECN(AdaptMethod):
    """ECN on the shared trainer: :class:`ECNStep` over a source loader and a target loader of
    random camera-style images (or the plain images with ``camstyle=False``)."""

    def __init__(self, lam: float = 0.3, temperature: float = 0.05, knn: int = 6,
                 neighbor_start_epoch: int = 5, momentum_per_epoch: float = 0.01,
                 camstyle: bool = True, target_batch_size: int = 0,
                 frozen: Sequence[str] = ()) -> None:
        self.lam = lam
        self.temperature = temperature
        self.knn = knn
        self.neighbor_start_epoch = neighbor_start_epoch
        self.momentum_per_epoch = momentum_per_epoch
        self.camstyle = camstyle
        self.target_batch_size = target_batch_size
        self.frozen = tuple(frozen)

    @classmethod
    def from_config(cls, cfg) -> "ECN":
        e = cfg.ADAPT.ECN
        return cls(e.LAMBDA, e.TEMPERATURE, e.KNN, e.NEIGHBOR_START_EPOCH, e.MOMENTUM_PER_EPOCH,
                   e.CAMSTYLE, e.TARGET_IMS_PER_BATCH, e.FROZEN)

    def camstyle_dir(self, target: UnlabeledDataset) -> Optional[Path]:
        """The checked camstyle folder (camera invariance on), else ``None``."""
        if not self.camstyle:
            return None
        return check_camstyle_dir(target.root, target.train, target.num_cameras, target.name)

    def check_target(self, target: UnlabeledDataset) -> None:
        """With camera invariance on, the camstyle folder must be complete (else a clear
        error telling how to generate it); with it off, say so."""
        folder = self.camstyle_dir(target)
        if folder is not None:
            logger.info("ECN camera invariance: camera-style images from %s", folder)
        else:
            logger.warning("ECN runs WITHOUT camera invariance (ADAPT.ECN.CAMSTYLE False): "
                           "the target images are used in their own camera style only")

    def prepare_model(self, model: nn.Module) -> None:
        frozen = freeze_modules(model, self.frozen)
        logger.info("ECN: %d parameter tensors frozen under %s", len(frozen), self.frozen)

    def build_step(self, ctx: AdaptContext) -> ECNStep:
        embedding_dim = getattr(getattr(ctx.model, "head", None), "embedding_dim", None)
        if embedding_dim is None:
            raise ValueError("ECN needs a head with a target embedding (MODEL.HEADS.NAME ecn)")
        batch_size = (per_rank_batch_size(self.target_batch_size,
                                          "ADAPT.ECN.TARGET_IMS_PER_BATCH")
                      if self.target_batch_size
                      else per_rank_batch_size(ctx.cfg.SOLVER.IMS_PER_BATCH))
        source_loader = build_source_loader(ctx.cfg)
        target_loader = build_target_loader(ctx.cfg, ctx.target.train, ctx.target.num_cameras,
                                            batch_size, self.camstyle_dir(ctx.target))
        loss_fn = build_loss_fn(ctx.cfg)
        objective = ECNObjective(ExemplarMemory(len(ctx.target.train), embedding_dim),
                                 lambda outputs, pids: sum(loss_fn(outputs, pids).values()),
                                 self.lam, self.temperature, self.knn, self.neighbor_start_epoch,
                                 self.momentum_per_epoch)
        return ECNStep(objective, source_loader, target_loader, ctx.device)

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        return [FrozenNormsHook(self.frozen)] if self.frozen else []
