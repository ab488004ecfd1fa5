"""ResNet / ResNeXt backbones (torchvision), with IBN-a, non-local blocks and last stride."""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
import torchvision
from torch import nn

from uda_reid.models.layers import IBN, NonLocalBlock
from uda_reid.models.registry import BACKBONES
from uda_reid.models.weights import load_pretrained

ARCHS: Dict[str, Callable[..., nn.Module]] = {
    "resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50, "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
    "resnext50_32x4d": torchvision.models.resnext50_32x4d,
    "resnext101_32x8d": torchvision.models.resnext101_32x8d,
}
# Non-local blocks per stage (layer1..layer4), FastReID's placement for ResNet-50.
NON_LOCAL_LAYERS = (0, 2, 3, 0)


def _set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    block = layer4[0]
    conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def _add_ibn(layers: Sequence[nn.Sequential]) -> None:
    """IBN-Net-a: instance norm on half the channels of each block's first norm (layer1-3)."""
    for layer in layers:
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)


def _with_non_local(layer: nn.Sequential, count: int) -> nn.Sequential:
    """Insert ``count`` non-local blocks after the last ``count`` residual blocks."""
    if count == 0:
        return layer
    blocks = list(layer)
    out = []
    for i, block in enumerate(blocks):
        out.append(block)
        if i >= len(blocks) - count:
            channels = block.conv3.out_channels if hasattr(block, "conv3") else \
                block.conv2.out_channels
            out.append(NonLocalBlock(channels))
    return nn.Sequential(*out)


class ResNetBackbone(nn.Module):
    """Stem + layer1..4 of a torchvision ResNet: (N, 3, H, W) -> (N, C, H/16 or H/32, ...)."""

    def __init__(self, arch: str = "resnet50", last_stride: int = 1, with_ibn: bool = False,
                 with_nl: bool = False) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise KeyError(f"Unknown ResNet arch '{arch}'; known: {', '.join(ARCHS)}")
        net = ARCHS[arch](weights=None)
        _set_last_stride(net.layer4, last_stride)
        if with_ibn:
            _add_ibn([net.layer1, net.layer2, net.layer3])
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        layers = [net.layer1, net.layer2, net.layer3, net.layer4]
        if with_nl:
            layers = [_with_non_local(layer, n) for layer, n in zip(layers, NON_LOCAL_LAYERS)]
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _register(arch: str, name: str, ibn: bool) -> None:
    def build(cfg) -> ResNetBackbone:
        opts = cfg.MODEL.BACKBONE
        model = ResNetBackbone(arch, opts.LAST_STRIDE, ibn or opts.WITH_IBN, opts.WITH_NL)
        if opts.PRETRAIN:
            if not opts.PRETRAIN_PATH:
                raise ValueError("MODEL.BACKBONE.PRETRAIN is on but MODEL.BACKBONE.PRETRAIN_PATH "
                                 "is empty: give a local weight file (nothing is downloaded)")
            load_pretrained(model, opts.PRETRAIN_PATH)
        return model

    build.__doc__ = f"{name}: torchvision {arch}{' with IBN-a' if ibn else ''} from the config."
    BACKBONES.register(name)(build)


for _arch in ARCHS:
    _register(_arch, _arch, ibn=False)
    _register(_arch, f"{_arch}_ibn_a", ibn=True)
