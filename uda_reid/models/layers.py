"""Building blocks shared by backbones: IBN-a normalisation and non-local blocks."""
from __future__ import annotations

import torch
from torch import nn


class IBN(nn.Module):
    """Instance norm on the first half of the channels, batch norm on the rest (IBN-Net-a)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class NonLocalBlock(nn.Module):
    """Non-local block (Wang et al., CVPR 2018) in the dot-product form FastReID uses:
    ``y = (theta^T phi / HW) g`` (no softmax), output ``x + BN(W y)``; the BN starts at zero,
    so the block starts as the identity. (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi = self.phi(x).flatten(2)  # (N, C', HW)
        g = self.g(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        affinity = (theta @ phi) / (h * w)  # (N, HW, HW)
        y = (affinity @ g).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.out(y)
