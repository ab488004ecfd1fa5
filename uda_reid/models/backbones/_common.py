"""What every CNN backbone builder does after construction: norm type and local weights."""
from __future__ import annotations

from typing import Optional

from torch import nn

from uda_reid.config.sections.model import BackboneConfig
from uda_reid.models.weight_names import pretrained_file
from uda_reid.models.sync_batchnorm import convert_sync_batchnorm
from uda_reid.models.weights import load_pretrained

NORMS = ("bn", "syncbn")


def convert_norm(module: nn.Module, norm: str) -> nn.Module:
    """``"BN"``: unchanged; ``"syncBN"``: every BatchNorm becomes a SyncBatchNorm (statistics
    shared across DDP processes; plain batch norm when not distributed)."""
    key = norm.lower()
    if key not in NORMS:
        raise ValueError(f"MODEL.BACKBONE.NORM must be 'BN' or 'syncBN', got {norm!r}")
    return convert_sync_batchnorm(module) if key == "syncbn" else module


def finish_backbone(model: nn.Module, opts: BackboneConfig, weights_into: Optional[nn.Module] = None
                    ) -> nn.Module:
    """Apply ``opts.NORM`` and, when ``opts.PRETRAIN``, load ``opts.PRETRAIN_PATH`` (a local
    file) or the cached ``opts.PRETRAIN_NAME`` (:func:`pretrained_file`; the key report is
    logged) into ``weights_into`` (default: ``model``; a wrapper passes
    the wrapped network whose names the weight files use). ``opts`` is ``MODEL.BACKBONE``."""
    if opts.PRETRAIN:
        what = ("MODEL.BACKBONE.PRETRAIN_NAME" if opts.PRETRAIN_NAME
                else "MODEL.BACKBONE.PRETRAIN_PATH")
        load_pretrained(model if weights_into is None else weights_into, pretrained_file(opts),
                        what)
    return convert_norm(model, opts.NORM)
