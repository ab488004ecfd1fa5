"""ResNeSt backbones through timm.

timm keeps a maintained ResNeSt implementation (split-attention blocks) with the same stage
layout as the paper; writing our own would duplicate it. Weights are never downloaded
(``pretrained=False``); local files load through ``MODEL.BACKBONE.PRETRAIN_PATH``. timm's
``output_stride=16`` replaces the last stage's stride by dilation, which is how
``LAST_STRIDE 1`` keeps the larger feature map here.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from uda_reid.models.registry import BACKBONES
from uda_reid.models.weights import load_pretrained

TIMM_NAMES = {"resnest50": "resnest50d", "resnest101": "resnest101e",
              "resnest200": "resnest200e", "resnest269": "resnest269e"}


class ResNeStBackbone(nn.Module):
    """timm ResNeSt trunk: (N, 3, H, W) -> (N, 2048, h, w)."""

    def __init__(self, name: str = "resnest50", last_stride: int = 1) -> None:
        super().__init__()
        self.net = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=0,
                                     global_pool="", output_stride=16 if last_stride == 1 else 32)
        self.out_channels = self.net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _register(name: str) -> None:
    def build(cfg) -> ResNeStBackbone:
        model = ResNeStBackbone(name, cfg.MODEL.BACKBONE.LAST_STRIDE)
        if cfg.MODEL.BACKBONE.PRETRAIN:
            load_pretrained(model.net, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
        return model

    BACKBONES.register(name)(build)


for _name in TIMM_NAMES:
    _register(_name)
