"""CycleGAN networks for one camera pair: ResNet generators and PatchGAN discriminators.

Architectures as described by Zhu et al. (CycleGAN, ICCV 2017, appendix 7.2) and used by
CamStyle (Zhong et al., CVPR 2018): G = reflection-padded 7x7 conv, two stride-2 convs,
residual blocks (reflection padding, optional dropout 0.5), two stride-2 transposed convs,
7x7 conv, tanh; D = 4x4 convs, the first ``layers`` of stride 2 (3 give a 70x70 receptive
field), then one of stride 1 and a 1-channel stride-1 output map; leaky ReLU 0.2; instance norm
without affine parameters everywhere except D's first layer. Weights start N(0, std), biases 0.
Images are in [-1, 1].
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False)


class ReflectResidualBlock(nn.Module):
    """x + (pad-conv3x3-IN-ReLU-[dropout]-pad-conv3x3-IN)(x); shape-preserving (N, C, H, W)."""

    def __init__(self, channels: int, dropout: bool) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                   _norm(channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(N, 3, H, W) -> (N, 3, H, W) in [-1, 1]; H and W divisible by 4."""

    def __init__(self, *, ngf: int, blocks: int, dropout: bool) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf),
                                   nn.ReLU(True)]
        dim = ngf
        for _ in range(2):
            layers += [nn.Conv2d(dim, dim * 2, 3, 2, 1), _norm(dim * 2), nn.ReLU(True)]
            dim *= 2
        layers += [ReflectResidualBlock(dim, dropout) for _ in range(blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(dim, dim // 2, 3, 2, 1, output_padding=1),
                       _norm(dim // 2), nn.ReLU(True)]
            dim //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(dim, 3, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"CycleGAN generator input height and width must be divisible by "
                             f"4, got {tuple(x.shape[-2:])}")
        return self.main(x)


class PatchDiscriminator(nn.Module):
    """(N, 3, H, W) -> (N, 1, h, w) real/fake scores of overlapping patches."""

    def __init__(self, *, ndf: int, layers: int) -> None:
        super().__init__()
        body: List[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        dim = ndf
        for i in range(1, layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            body += [nn.Conv2d(dim, out, 4, stride, 1), _norm(out), nn.LeakyReLU(0.2, True)]
            dim = out
        body.append(nn.Conv2d(dim, 1, 4, 1, 1))
        self.main = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def patch_map_size(size: Tuple[int, int], layers: int) -> Tuple[int, int]:
    """(h, w) of a :class:`PatchDiscriminator`'s score map for (H, W) inputs: each stride-2
    layer halves (floor) a side, the two stride-1 4x4 layers take 1 each; a ``ValueError``
    naming the sizes when a side falls below 1."""
    out = tuple((side >> layers) - 2 for side in size)
    if min(out) < 1:
        raise ValueError(f"CAMSTYLE.CYCLEGAN.CROP_SIZE {tuple(size)} is too small for D_LAYERS "
                         f"{layers}: each side must stay >= 3 after {layers} halvings")
    return out  # type: ignore[return-value]


def init_normal(module: nn.Module, std: float) -> None:
    """Convolution weights N(0, std) and biases 0 (CycleGAN's ``normal`` initialisation)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class CycleGAN(nn.Module):
    """The four networks of camera pair (a, b): ``g_ab`` renders a-images in b's style,
    ``g_ba`` the reverse; ``d_a`` / ``d_b`` judge whether an image is a real one of a / b."""

    def __init__(self, *, ngf: int, ndf: int, g_blocks: int, d_layers: int, dropout: bool,
                 init_std: float) -> None:
        super().__init__()
        self.g_ab = ResnetGenerator(ngf=ngf, blocks=g_blocks, dropout=dropout)
        self.g_ba = ResnetGenerator(ngf=ngf, blocks=g_blocks, dropout=dropout)
        self.d_a = PatchDiscriminator(ndf=ndf, layers=d_layers)
        self.d_b = PatchDiscriminator(ndf=ndf, layers=d_layers)
        init_normal(self, init_std)

    @staticmethod
    def spec_from_config(cg: Any) -> Dict[str, Any]:
        """Constructor arguments from the CAMSTYLE.CYCLEGAN section (stored in checkpoints)."""
        return {"ngf": cg.NGF, "ndf": cg.NDF, "g_blocks": cg.G_BLOCKS,
                "d_layers": cg.D_LAYERS, "dropout": cg.DROPOUT, "init_std": cg.INIT_STD}

    @classmethod
    def from_config(cls, cg: Any) -> "CycleGAN":
        return cls(**cls.spec_from_config(cg))

    def generators(self) -> List[nn.Module]:
        return [self.g_ab, self.g_ba]

    def discriminators(self) -> List[nn.Module]:
        return [self.d_a, self.d_b]
