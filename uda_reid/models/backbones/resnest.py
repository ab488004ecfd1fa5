"""ResNeSt backbones through timm.

Why timm rather than our own: timm keeps a maintained ResNeSt (split-attention blocks, the
paper's stage layout and its deep stem / average-pool downsampling), and the project already
reuses timm for transformer blocks; a second copy would only drift. timm does not download
(``pretrained=False``): a local file (``MODEL.BACKBONE.PRETRAIN_PATH``) or a cached timm weight
(``PRETRAIN_NAME timm:resnest50d.in1k``) loads with timm's parameter names. ``LAST_STRIDE 1`` uses timm's ``output_stride=16``, which replaces the last
stage's stride by dilation: the map is H/16 x W/16 like the ResNets'.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from uda_reid.config.sections.data import InputConfig
from uda_reid.config.sections.model import BackboneConfig, ModelConfig
from uda_reid.models.backbones._common import finish_backbone
from uda_reid.models.registry import BACKBONES
from uda_reid.utils.errors import UnknownNameError

TIMM_NAMES = {"resnest50": "resnest50d", "resnest101": "resnest101e",
              "resnest200": "resnest200e", "resnest269": "resnest269e"}


class ResNeStBackbone(nn.Module):
    """timm ResNeSt trunk: (N, 3, H, W) -> (N, 2048, H/16 or H/32, W/16 or W/32)."""

    def __init__(self, name: str = "resnest50",
                 last_stride: int = BackboneConfig.LAST_STRIDE) -> None:
        super().__init__()
        if name not in TIMM_NAMES:
            raise UnknownNameError(f"Unknown ResNeSt '{name}'; known: {', '.join(TIMM_NAMES)}")
        if last_stride not in (1, 2):
            raise ValueError(f"MODEL.BACKBONE.LAST_STRIDE must be 1 or 2, got {last_stride}")
        self.net = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=0,
                                     global_pool="", output_stride=16 if last_stride == 1 else 32)
        self.out_channels = self.net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _register(name: str) -> None:
    def build(opts: ModelConfig, inp: InputConfig) -> ResNeStBackbone:
        backbone = opts.BACKBONE
        if backbone.WITH_IBN or backbone.WITH_NL:
            raise ValueError(f"MODEL.BACKBONE.NAME {name}: WITH_IBN / WITH_NL are available for "
                             "the ResNet/ResNeXt backbones only; set them to False")
        model = ResNeStBackbone(name, backbone.LAST_STRIDE)
        return finish_backbone(model, backbone, weights_into=model.net)

    build.__doc__ = f"{name}: timm {TIMM_NAMES[name]} trunk from MODEL.BACKBONE."
    BACKBONES.register(name)(build)


for _name in TIMM_NAMES:
    _register(_name)
