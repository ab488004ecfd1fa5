"""ResNet / ResNeXt backbones (torchvision), with IBN-a, non-local blocks and last stride.

Parameter names stay those of torchvision's ResNet (``layer3.4.conv2.weight``): non-local
blocks live in ``non_local.<stage>`` beside the stages, not inside them, so ImageNet and IBN-Net
weight files load by name whatever the options.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
import torchvision
from torch import nn

from uda_reid.config.sections.data import InputConfig
from uda_reid.config.sections.model import BackboneConfig, ModelConfig
from uda_reid.models.backbones._common import finish_backbone
from uda_reid.models.layers import IBN, NonLocalBlock
from uda_reid.models.registry import BACKBONES
from uda_reid.utils.errors import UnknownNameError

ARCHS: Dict[str, Callable[..., nn.Module]] = {
    "resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50, "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
    "resnext50_32x4d": torchvision.models.resnext50_32x4d,
    "resnext101_32x8d": torchvision.models.resnext101_32x8d,
}
STAGES = ("layer1", "layer2", "layer3", "layer4")
# Non-local blocks per stage, placed after that stage's last residual blocks. ResNet-50 and
# ResNet-101 are FastReID's placements; the other depths follow the one with the same stage
# layout (34 like 50, 152 like 101) and ResNet-18 (two blocks per stage) gets one per stage.
NON_LOCAL_PER_STAGE: Dict[str, Tuple[int, int, int, int]] = {
    "resnet18": (0, 1, 1, 0), "resnet34": (0, 2, 3, 0), "resnet50": (0, 2, 3, 0),
    "resnet101": (0, 2, 9, 0), "resnet152": (0, 2, 9, 0),
    "resnext50_32x4d": (0, 2, 3, 0), "resnext101_32x8d": (0, 2, 9, 0),
}


def set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    """Give the first block of ``layer4`` (and its shortcut) ``stride``: 1 keeps H/16."""
    if stride not in (1, 2):
        raise ValueError(f"MODEL.BACKBONE.LAST_STRIDE must be 1 or 2, got {stride}")
    block = layer4[0]
    conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def add_ibn_a(stage: nn.Sequential) -> None:
    """IBN-Net-a: instance norm on half the channels of every block's first norm."""
    for block in stage:
        block.bn1 = IBN(block.bn1.num_features)


def stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a torchvision ResNet stage (basic or bottleneck blocks)."""
    last = stage[-1]
    return last.bn3.num_features if hasattr(last, "bn3") else last.bn2.num_features


class ResNetBackbone(nn.Module):
    """Stem + layer1..4 of a torchvision ResNet / ResNeXt.

    (N, 3, H, W) -> (N, C, H/16, W/16) with ``last_stride=1``, (N, C, H/32, W/32) with 2;
    C = 512 (ResNet-18/34) or 2048. ``with_ibn``: IBN-a in layer1-3; ``with_nl``: non-local
    blocks after the last blocks of layer2/3 (:data:`NON_LOCAL_PER_STAGE`).
    """

    def __init__(self, arch: str = BackboneConfig.NAME,
                 last_stride: int = BackboneConfig.LAST_STRIDE,
                 with_ibn: bool = BackboneConfig.WITH_IBN,
                 with_nl: bool = BackboneConfig.WITH_NL) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise UnknownNameError(f"Unknown ResNet arch '{arch}'; known: {', '.join(ARCHS)}")
        net = ARCHS[arch](weights=None)
        set_last_stride(net.layer4, last_stride)
        if with_ibn:
            for stage in (net.layer1, net.layer2, net.layer3):
                add_ibn_a(stage)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer1, net.layer2,
                                                              net.layer3, net.layer4)
        self.non_local = nn.ModuleDict()
        if with_nl:
            for name, count in zip(STAGES, NON_LOCAL_PER_STAGE[arch]):
                stage = getattr(self, name)
                if count:
                    channels = stage_channels(stage)
                    self.non_local[name] = nn.ModuleList(
                        NonLocalBlock(channels) for _ in range(min(count, len(stage))))
        self.out_channels = net.fc.in_features

    def _run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        blocks = getattr(self, name)
        non_local = self.non_local[name] if name in self.non_local else nn.ModuleList()
        first = len(blocks) - len(non_local)
        for i, block in enumerate(blocks):
            x = block(x)
            if i >= first:
                x = non_local[i - first](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in STAGES:
            x = self._run_stage(name, x)
        return x


# Each registered backbone is built as ``BACKBONES.get(name)(model, inp)`` from the ``MODEL``
# and ``INPUT`` sections (the CNNs read ``MODEL.BACKBONE`` only).
def _register(arch: str, name: str, ibn: bool) -> None:
    def build(opts: ModelConfig, inp: InputConfig) -> ResNetBackbone:
        backbone = opts.BACKBONE
        model = ResNetBackbone(arch, backbone.LAST_STRIDE, ibn or backbone.WITH_IBN,
                               backbone.WITH_NL)
        return finish_backbone(model, backbone)

    build.__doc__ = (f"{name}: torchvision {arch}{' with IBN-a' if ibn else ''} from "
                     "MODEL.BACKBONE.")
    BACKBONES.register(name)(build)


for _arch in ARCHS:
    _register(_arch, _arch, ibn=False)
    _register(_arch, f"{_arch}_ibn_a", ibn=True)
