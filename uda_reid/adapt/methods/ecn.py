"""ECN (Zhong et al., CVPR 2019): source cross-entropy plus exemplar / camera / neighbourhood
invariance over an exemplar memory of the target training images."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from uda_reid.adapt.base import AdaptContext, AdaptMethod, StageSettings
from uda_reid.adapt.guard import SourceImages
from uda_reid.adapt.invariance import invariance_loss, use_neighbors
from uda_reid.adapt.memory import ExemplarMemory, momentum_schedule
from uda_reid.adapt.registry import METHODS
from uda_reid.config.sections.adapt import method_options
from uda_reid.data.loaders import build_batch_loader, build_shuffled_loader, per_rank_batch_size
from uda_reid.engine.freeze import FrozenNormsHook, freeze_modules
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import BatchStream, TrainStep
from uda_reid.models.forward import forward_model, side_info_domain
from uda_reid.utils.distributed import batch_mean

logger = logging.getLogger(__name__)


@method_options("ECN")
class ECNConfig:
    # Defaults from zhunzhong07/ECN main.py / reid/loss/invariance.py / reid/trainers.py.
    LAMBDA: float = 0.3  # (1-lambda)*L_source + lambda*L_target (--lmd)
    TEMPERATURE: float = 0.05  # --inv-beta
    KNN: int = 6  # --knn; 0 turns neighbourhood invariance off
    NEIGHBOR_START_EPOCH: int = 5  # the original uses epoch > 4 (0-based)
    MOMENTUM_PER_EPOCH: float = 0.01  # memory update rate alpha = 0.01 * epoch (--inv-alpha)
    CAMSTYLE: bool = True  # camera invariance from <target root>/bounding_box_train_camstyle
    TARGET_IMS_PER_BATCH: int = 0  # 0: ADAPT.SOLVER.IMS_PER_BATCH (the original: 128 and 128)
    # Stage 2's source branch: "ce" the original's plain cross-entropy, or "model" the stage-1
    # losses of MODEL.LOSSES; batches "random" (shuffled, the original) or "pk" (identities x
    # DATALOADER.NUM_INSTANCE images).
    SOURCE_LOSS: str = "ce"
    SOURCE_SAMPLER: str = "random"
    # Module-name prefixes that do not train, their BatchNorms kept in eval mode (original:
    # conv1 .. layer2 of the ResNet).
    FROZEN: Tuple[str, ...] = ("backbone.conv1", "backbone.bn1", "backbone.layer1",
                               "backbone.layer2")
    # "one_stage" (the original): the model starts from its initial weights (the pretrained
    # backbone, MODEL.BACKBONE.PRETRAIN; a fresh head), FROZEN stays at them, and the source and
    # target losses train together from the first step under ADAPT.SOLVER; no source model
    # is trained (SOLVER is unused). "two_stage": ECN starts from the stage-1 source model.
    PROTOCOL: str = "one_stage"

SourceLoss = Callable[[Dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _global(value):
    """The global output when a model returns ``[global, local_1, ...]``."""
    return value[0] if isinstance(value, (list, tuple)) else value


def cross_entropy_on_logits(outputs: Dict[str, torch.Tensor], pids: torch.Tensor) -> torch.Tensor:
    """ECN's source loss: plain cross-entropy of the source classifier."""
    return batch_mean(nn.functional.cross_entropy(_global(outputs["logits"]), pids,
                                                  reduction="none"))


class ECNObjective(nn.Module):
    """ECN's per-iteration loss with its exemplar memory (a buffer, checkpointed with this
    module). Call :meth:`forward` for the loss, then :meth:`update_memory` after the
    optimiser step."""

    def __init__(self, memory: ExemplarMemory, source_loss: SourceLoss = cross_entropy_on_logits,
                 lam: float = ECNConfig.LAMBDA, temperature: float = ECNConfig.TEMPERATURE,
                 knn: int = ECNConfig.KNN,
                 neighbor_start_epoch: int = ECNConfig.NEIGHBOR_START_EPOCH,
                 momentum_per_epoch: float = ECNConfig.MOMENTUM_PER_EPOCH) -> None:
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

    @property
    def uses_target(self) -> bool:
        """False for ``lam`` 0, ECN's source-only baseline: no target image is forwarded (its
        batch statistics would otherwise adapt the BatchNorms to the target)."""
        return self.lam > 0

    def forward(self, model: nn.Module, source: Dict[str, torch.Tensor],
                target: Optional[Dict[str, torch.Tensor]], epoch: int
                ) -> Dict[str, torch.Tensor]:
        """Weighted losses ``loss_source``, ``loss_target`` (their sum is ECN's total loss; no
        ``loss_target`` without :attr:`uses_target`) and detached monitoring scalars.
        source/target: batches with ``images`` (B, 3, H, W)."""
        out_s = forward_model(model, source)
        loss_s = self.source_loss(out_s, source["pids"])
        with torch.no_grad():
            accuracy = (_global(out_s["logits"]).argmax(1) == source["pids"]).float().mean()
        out = {"loss_source": (1.0 - self.lam) * loss_s, "stat_source_ce": loss_s.detach(),
               "stat_source_acc": accuracy}
        if not self.uses_target:
            return out
        with side_info_domain(model, "target"):  # SIE backbones: the target's cameras
            out_t = forward_model(model, target)
        feats = _global(out_t["embedding"])
        indexes = target["indexes"].to(feats.device)
        sims = self.memory.similarities(feats)
        neighbors = self.knn > 0 and use_neighbors(epoch, self.neighbor_start_epoch)
        loss_t = invariance_loss(sims, indexes, self.temperature, self.knn, neighbors)
        self._pending = (feats.detach(), indexes)
        with torch.no_grad():
            own = sims.gather(1, indexes.view(-1, 1)).squeeze(1)
        return {**out, "loss_target": self.lam * loss_t, "stat_target_inv": loss_t.detach(),
                "stat_own_slot_sim": own.mean(), "stat_neighbors": torch.tensor(float(neighbors))}

    @torch.no_grad()
    def update_memory(self, epoch: int) -> None:
        """Write the last forward's target features into their slots (after the step)."""
        if not self.uses_target:
            return
        if self._pending is None:
            raise RuntimeError("update_memory() called without a preceding forward()")
        feats, indexes = self._pending
        self._pending = None
        self.memory.update(feats, indexes, momentum_schedule(epoch, self.momentum_per_epoch))


class ECNStep(TrainStep):
    """One ECN iteration: a labelled source batch and a (camera-styled) target batch (none
    without a ``target_loader``: the source-only baseline); the memory is written after the
    optimiser step. ``len`` = source batches per epoch."""

    def __init__(self, objective: ECNObjective, source_loader: Iterable,
                 target_loader: Optional[Iterable], device: torch.device | str = "cpu") -> None:
        self.objective = objective.to(device)
        self.source_loader = source_loader
        self.streams = {"source": BatchStream(source_loader, device)}
        if target_loader is not None:
            self.streams["target"] = BatchStream(target_loader, device)
        self.epoch = 0
        self._stats: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.source_loader)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for stream in self.streams.values():
            stream.begin_epoch(epoch)

    def run(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        batches = {name: stream.next() for name, stream in self.streams.items()}
        out = self.objective(model, batches["source"], batches.get("target"), self.epoch)
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
        return {"objective": self.objective.state_dict(),
                **{name: stream.state_dict() for name, stream in self.streams.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.objective.load_state_dict(state["objective"])
        for name, stream in self.streams.items():
            stream.load_state_dict(state.get(name, {}))


SOURCE_LOSSES = ("ce", "model")
SOURCE_SAMPLERS = ("random", "pk")
PROTOCOLS = ("one_stage", "two_stage")


def build_source_loader(source: SourceImages, settings: StageSettings,
                        sampler: str = "random") -> Iterable:
    """Labelled source batches of ``settings.batch_size`` with the training transforms:
    shuffled (``"random"``, the original's) or identity-balanced (``"pk"``)."""
    dataset = source.dataset(settings.train_transform)
    if sampler == "random":
        return build_shuffled_loader(dataset, per_rank_batch_size(settings.batch_size),
                                     settings.num_workers, settings.seed)
    if sampler == "pk":
        return build_batch_loader(dataset, source.pids, per_rank_batch_size(settings.batch_size),
                                  settings.num_instances, settings.num_workers, settings.seed)
    raise ValueError(f"ADAPT.ECN.SOURCE_SAMPLER must be one of {SOURCE_SAMPLERS}, got {sampler!r}")


@METHODS.register("ecn")
class ECN(AdaptMethod):
    """ECN on the shared trainer: :class:`ECNStep` over a source loader and a target loader of
    random camera-style images (or the plain images with ``camstyle=False``).

    source_loss: ``"ce"`` (plain cross-entropy, the original's) or ``"model"`` (the stage-1
    losses); source_sampler: ``"random"`` (the original's) or ``"pk"``; protocol:
    ``"one_stage"`` (the original's: from the initial weights, ``frozen`` kept at them) or
    ``"two_stage"`` (from the stage-1 source model)."""

    def __init__(self, lam: float = ECNConfig.LAMBDA, temperature: float = ECNConfig.TEMPERATURE,
                 knn: int = ECNConfig.KNN,
                 neighbor_start_epoch: int = ECNConfig.NEIGHBOR_START_EPOCH,
                 momentum_per_epoch: float = ECNConfig.MOMENTUM_PER_EPOCH,
                 camstyle: bool = ECNConfig.CAMSTYLE,
                 target_batch_size: int = ECNConfig.TARGET_IMS_PER_BATCH,
                 frozen: Sequence[str] = (), source_loss: str = ECNConfig.SOURCE_LOSS,
                 source_sampler: str = ECNConfig.SOURCE_SAMPLER,
                 protocol: str = ECNConfig.PROTOCOL) -> None:
        if source_loss not in SOURCE_LOSSES:
            raise ValueError(f"ADAPT.ECN.SOURCE_LOSS must be one of {SOURCE_LOSSES}, "
                             f"got {source_loss!r}")
        if source_sampler not in SOURCE_SAMPLERS:
            raise ValueError(f"ADAPT.ECN.SOURCE_SAMPLER must be one of {SOURCE_SAMPLERS}, "
                             f"got {source_sampler!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"ADAPT.ECN.PROTOCOL must be one of {PROTOCOLS}, got {protocol!r}")
        self.lam = lam
        self.temperature = temperature
        self.knn = knn
        self.neighbor_start_epoch = neighbor_start_epoch
        self.momentum_per_epoch = momentum_per_epoch
        self.camstyle = camstyle
        self.target_batch_size = target_batch_size
        self.frozen = tuple(frozen)
        self.source_loss = source_loss
        self.source_sampler = source_sampler
        self.protocol = protocol

    @classmethod
    def from_config(cls, adapt) -> "ECN":
        e = adapt.ECN
        return cls(e.LAMBDA, e.TEMPERATURE, e.KNN, e.NEIGHBOR_START_EPOCH, e.MOMENTUM_PER_EPOCH,
                   e.CAMSTYLE, e.TARGET_IMS_PER_BATCH, e.FROZEN, e.SOURCE_LOSS, e.SOURCE_SAMPLER,
                   e.PROTOCOL)

    @property
    def uses_camstyle(self) -> bool:
        return self.camstyle and self.lam > 0

    @property
    def needs_source_model(self) -> bool:
        return self.protocol == "two_stage"

    def prepare_model(self, model: nn.Module) -> None:
        frozen = freeze_modules(model, self.frozen)
        logger.info("ECN: %d parameter tensors frozen under %s", len(frozen), self.frozen)

    def source_loss_fn(self, settings: StageSettings) -> SourceLoss:
        if self.source_loss == "ce":
            return cross_entropy_on_logits
        return lambda outputs, pids: sum(settings.model_losses(outputs, pids).values())

    def build_step(self, ctx: AdaptContext) -> ECNStep:
        embedding_dim = getattr(getattr(ctx.model, "head", None), "embedding_dim", None)
        if embedding_dim is None:
            raise ValueError("ECN needs a head with a target embedding (MODEL.HEADS.NAME ecn)")
        s = ctx.settings
        objective = ECNObjective(ExemplarMemory(len(ctx.target), embedding_dim),
                                 self.source_loss_fn(s), self.lam, self.temperature, self.knn,
                                 self.neighbor_start_epoch, self.momentum_per_epoch)
        source_loader = build_source_loader(ctx.source, s, self.source_sampler)
        if not objective.uses_target:
            logger.warning("ECN with ADAPT.ECN.LAMBDA 0: the source-only baseline (no target "
                           "image is read)")
            return ECNStep(objective, source_loader, None, ctx.device)
        if self.camstyle:
            logger.info("ECN camera invariance: target images in random camera styles")
        else:
            logger.warning("ECN runs WITHOUT camera invariance (ADAPT.ECN.CAMSTYLE False): "
                           "the target images are used in their own camera style only")
        if self.knn <= 0:
            logger.warning("ECN runs WITHOUT neighbourhood invariance (ADAPT.ECN.KNN 0)")
        target = ctx.target.dataset(s.train_transform, camstyle=self.camstyle)
        batch_size = (per_rank_batch_size(self.target_batch_size,
                                          "ADAPT.ECN.TARGET_IMS_PER_BATCH")
                      if self.target_batch_size else per_rank_batch_size(s.batch_size))
        target_loader = build_shuffled_loader(target, batch_size, s.num_workers, s.seed)
        return ECNStep(objective, source_loader, target_loader, ctx.device)

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        return [FrozenNormsHook(self.frozen)] if self.frozen else []
