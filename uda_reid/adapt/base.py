"""What an adaptation method is: a small class that builds the stage-2 training step (its
losses, memories, pseudo-labels) and hooks for the shared trainer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import torch
from torch import nn

from uda_reid.adapt.guard import UnlabeledDataset
from uda_reid.engine.hooks import HookBase
from uda_reid.engine.trainer import TrainStep


@dataclass
class AdaptContext:
    """Everything a method may use: the source-trained model, the labelled source dataset, the
    target domain *without identities*, the resolved config, the device and the output folder.

    label_quality: monitoring only, ``labels (N,) -> {"nmi", "ari", ...}`` of pseudo-labels
    of ``target.train`` (in its order, -1 = outlier) against the hidden identities, which the
    callable keeps to itself (None when the pipeline offers no monitoring)."""

    cfg: Any
    model: nn.Module
    source: Any
    target: UnlabeledDataset
    device: torch.device
    output_dir: Path
    label_quality: Optional[Callable[[np.ndarray], Dict[str, float]]] = None


class AdaptMethod:
    """Base class: a method that does not train (``build_step`` returns ``None``) is direct
    transfer; the others return their :class:`TrainStep` (with ``len`` = iterations/epoch).

    ``training_modules``: names of sub-modules the method adds to the model for training only
    (e.g. pseudo-label classifiers); its checkpoints record them, so that testing loads the
    adapted model without them."""

    training_modules: Tuple[str, ...] = ()

    def check_target(self, target: UnlabeledDataset) -> None:
        """Fail early (before stage 1) on missing method inputs, e.g. camera-style images."""

    def prepare_model(self, model: nn.Module) -> None:
        """Change the model before its optimiser is built (e.g. freeze early stages)."""

    def build_step(self, ctx: AdaptContext) -> Optional[TrainStep]:
        return None

    def hooks(self, ctx: AdaptContext) -> List[HookBase]:
        """Extra trainer hooks (they run before evaluation and checkpointing)."""
        return []

    def report(self) -> Dict[str, Any]:
        """Extra entries for the method's stage in ``results.json`` (after training)."""
        return {}
