"""How a batch reaches a model: batch dicts moved to a device, and the model's own batch call."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch
from torch import Tensor, nn


def move_batch(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    """Tensors of a batch dict moved to ``device`` (other values unchanged)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
            for k, v in batch.items()}


def forward_model(model: nn.Module, batch: Mapping[str, Any]) -> Any:
    """Run ``model`` on a batch dict: its ``forward_batch(batch)`` when it has one (a
    :class:`~uda_reid.models.reid_model.ReIDModel` also reads the cameras and, in training,
    the identities), else ``model(batch["images"])``."""
    forward_batch = getattr(model, "forward_batch", None)
    return forward_batch(batch) if forward_batch is not None else model(batch["images"])
