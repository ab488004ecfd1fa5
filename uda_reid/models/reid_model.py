"""The ReID model: backbone -> pooling -> head, built from the MODEL section by registry names."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from uda_reid.config.sections.data import InputConfig
from uda_reid.config.sections.model import ModelConfig
from uda_reid.models.registry import BACKBONES, HEADS, POOLINGS
from uda_reid.models.sync_batchnorm import convert_sync_batchnorm
from uda_reid.models.weights import load_pretrained
from uda_reid.utils.distributed import is_distributed

logger = logging.getLogger(__name__)


class ReIDModel(nn.Module):
    """images (N, 3, H, W) -> backbone map or tokens -> pooled (N, C) -> head.

    ``forward(images, camids=None, targets=None)``: training returns the head's dict
    (``logits`` (N, K), ``features`` pre-BNNeck (N, D), ``embedding`` (N, D); lists for JPM);
    eval returns the retrieval embedding (N, D). Backbones with ``uses_side_info`` receive the
    camera ids (N,); margin classifiers receive ``targets`` (N,). The engine groups parameters
    by the ``backbone`` / ``pooling`` / ``head`` attribute names.
    """

    def __init__(self, backbone: nn.Module, pooling: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.pooling, self.head = backbone, pooling, head

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None,
                targets: Optional[torch.Tensor] = None
                ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        if getattr(self.backbone, "uses_side_info", False):
            maps = self.backbone(images, camids)
        else:
            maps = self.backbone(images)
        return self.head(self.pooling(maps), targets)

    def forward_batch(self, batch: Mapping[str, Any]
                      ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        """:meth:`forward` on a batch dict: ``images`` (N, 3, H, W), ``camids`` (N,) (for
        side-information backbones) and, in training, ``pids`` (N,) as the targets of margin
        classifiers."""
        targets = batch.get("pids") if self.training else None
        return self(batch["images"], batch["camids"], targets)


    @classmethod
    def from_config(cls, opts: ModelConfig, inp: InputConfig, num_classes: int) -> "ReIDModel":
        """``MODEL.BACKBONE.NAME`` + ``MODEL.POOLING.NAME`` + ``MODEL.HEADS.NAME`` for
        ``num_classes`` training ids from the ``MODEL`` section (``inp``: the ``INPUT``
        section, whose image size a ViT needs); ``MODEL.WEIGHTS`` (a local file) is loaded with
        a report. With ``MODEL.SYNC_BN`` in a distributed run every BatchNorm is a
        ``SyncBatchNorm``."""
        backbone = BACKBONES.get(opts.BACKBONE.NAME)(opts, inp)
        channels = backbone.out_channels
        pooling = POOLINGS.get(opts.POOLING.NAME)(opts.POOLING, channels)
        head = HEADS.get(opts.HEADS.NAME)(opts, channels, num_classes)
        model = cls(backbone, pooling, head)
        if opts.SYNC_BN and is_distributed():
            convert_sync_batchnorm(model)
        if opts.WEIGHTS:
            load_pretrained(model, opts.WEIGHTS, "MODEL.WEIGHTS")
        return model


def build_model(cfg, num_classes: int) -> ReIDModel:
    """Entry point for the run flows: :meth:`ReIDModel.from_config` of the root config's
    ``MODEL`` and ``INPUT`` sections."""
    return ReIDModel.from_config(cfg.MODEL, cfg.INPUT, num_classes)
