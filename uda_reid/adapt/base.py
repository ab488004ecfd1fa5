"""What an adaptation method is: a small class that builds the stage-2 training step (its
losses, memories, pseudo-labels) and hooks for the shared trainer, from the pieces in an
:class:`AdaptContext` - never from the run's config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from uda_reid.adapt.guard import SourceImages, TargetImages
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import TrainStep


@dataclass(frozen=True)
class StageSettings:
    """The run's shared stage-2 settings a method may use.

    batch_size: ``ADAPT.SOLVER.IMS_PER_BATCH``; test_batch_size: ``TEST.IMS_PER_BATCH``;
    num_instances: ``DATALOADER.NUM_INSTANCE`` (images per identity in PK batches);
    num_workers: ``DATALOADER.NUM_WORKERS``; seed: ``SEED``; flip: ``TEST.FLIP``;
    neck_feat: ``MODEL.HEADS.NECK_FEAT``; train/test_transform: ``INPUT``'s transforms;
    model_losses: ``MODEL.LOSSES`` (the stage-1 losses), ``(outputs, pids) -> {name: loss}``.
    """

    batch_size: int
    test_batch_size: int
    num_instances: int
    num_workers: int
    seed: int
    flip: bool
    neck_feat: str
    train_transform: Callable
    test_transform: Callable
    model_losses: Callable[[Dict[str, Any], torch.Tensor], Dict[str, torch.Tensor]]


@dataclass(frozen=True)
class AdaptContext:
    """Everything a method may use: the source-trained model (without a source: the start
    model), the labelled source training set (``None`` without a source, ``ADAPT.SOURCE
    none``), the target training set *without identities* (:mod:`uda_reid.adapt.guard`), the
    shared settings, the device and the folder for its own outputs (e.g. TensorBoard events).
    ``seed_models``: the start models of the other ``SEED`` values the method asked for
    (:meth:`AdaptMethod.start_model_seeds`), read with :meth:`start_model`."""

    model: nn.Module
    source: Optional[SourceImages]
    target: TargetImages
    settings: StageSettings
    device: torch.device
    output_dir: Path
    seed_models: Mapping[int, nn.Module] = field(default_factory=dict)

    def start_model(self, seed: int) -> nn.Module:
        """The model the run would start from with ``SEED`` = ``seed`` (the source model stage 1
        trains or reuses for that seed), on the device; only for the seeds the method asked
        for."""
        if seed not in self.seed_models:
            raise KeyError(f"no start model of SEED {seed} was prepared: the method asks for "
                           f"the seeds {sorted(self.seed_models)} (start_model_seeds)")
        return self.seed_models[seed]


class AdaptMethod:
    """Base class: a method that does not train (``build_step`` returns ``None``) is direct
    transfer; the others return their :class:`TrainStep` (with ``len`` = iterations/epoch).

    ``from_config(adapt)`` builds a method from the ``ADAPT`` section only.
    ``training_modules``: names of sub-modules the method adds to the model for training only
    (e.g. pseudo-label classifiers); its checkpoints record them, so that testing loads the
    adapted model without them."""

    training_modules: Tuple[str, ...] = ()

    @property
    def uses_source(self) -> bool:
        """Whether the method trains on the labelled source images (then it cannot run without
        a source, ``ADAPT.SOURCE none``)."""
        return True

    @property
    def uses_camstyle(self) -> bool:
        """Whether the method draws target images in other cameras' styles (the pipeline then
        checks and prepares the camera-style images before stage 1)."""
        return False

    @property
    def needs_source_model(self) -> bool:
        """Whether the method starts from the stage-1 source model (trained or reused); if not,
        it trains the model from its initial weights in one stage."""
        return True

    def start_model_seeds(self, seed: int) -> Tuple[int, ...]:
        """The other ``SEED`` values (beside the run's ``seed``) whose start model the method
        needs, e.g. a second network's; the pipeline builds each as it builds the run's own
        (stage 1 trained, or reused from its cache, for that seed) before stage 2 is seeded,
        and hands them over in :attr:`AdaptContext.seed_models`."""
        return ()

    def prepare_model(self, model: nn.Module) -> None:
        """Change the model before its optimiser is built (e.g. freeze early stages); the
        start models of :meth:`start_model_seeds` are prepared too."""

    def build_step(self, ctx: AdaptContext) -> Optional[TrainStep]:
        return None

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        """Extra trainer hooks (they run before evaluation and checkpointing). Their
        ``trainer`` is a view with ``model``, ``optimizer``, ``epoch``, ``iter``,
        ``max_epoch`` and ``iters_per_epoch`` only."""
        return []

    def pseudo_labels(self) -> Optional[np.ndarray]:
        """The pseudo-labels (H, N) the current epoch trains on, one row per granularity, of the
        target images in slot order (-1: none); ``None`` for methods without. The pipeline
        scores them against the hidden identities after every epoch."""
        return None

    def report(self) -> Dict[str, Any]:
        """Extra entries for the method's stage in ``results.json`` (after training)."""
        return {}
