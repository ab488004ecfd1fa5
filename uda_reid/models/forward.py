"""How a batch reaches a model: batch dicts moved to a device, the model's own batch call, and
whose cameras its side-information backbones read."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping

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


def set_side_info_domain(model: nn.Module, domain: str) -> int:
    """Tell every side-information backbone inside ``model`` (a module with an ``sie`` embedding
    and ``set_sie_domain``, e.g. TransReID's) whether its camera ids are the training
    (``source``) cameras or another domain's (``target``: ``SIE_TARGET_POLICY`` applies). Call
    with ``target`` before extracting or training on a domain other than the SIE's training
    set. Returns the number of backbones told (0 for models without side information)."""
    told = 0
    for module in model.modules():
        if getattr(module, "sie", None) is not None and hasattr(module, "set_sie_domain"):
            module.set_sie_domain(domain)
            told += 1
    return told


@contextmanager
def side_info_domain(model: nn.Module, domain: str) -> Iterator[nn.Module]:
    """Within the block the side-information backbones of ``model`` read camera ids as
    ``domain``'s (``source`` or ``target``); afterwards they are back to ``source``."""
    set_side_info_domain(model, domain)
    try:
        yield model
    finally:
        set_side_info_domain(model, "source")
