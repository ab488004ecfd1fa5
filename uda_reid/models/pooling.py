"""Aggregation of a feature map into a vector: avg, max, GeM, attention; identity for tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.config.sections.model import PoolingConfig
from uda_reid.models.registry import POOLINGS


def check_map(x: torch.Tensor, pooling: str) -> None:
    """Raise a clear error unless ``x`` is a feature map (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"{pooling} pooling needs a feature map (N, C, H, W), got shape "
                         f"{tuple(x.shape)}; for backbones that return vectors or tokens set "
                         "MODEL.POOLING.NAME identity")


class AvgPool(nn.Module):
    """(N, C, H, W) -> (N, C) mean over positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x, "avg")
        return x.mean(dim=(2, 3))


class MaxPool(nn.Module):
    """(N, C, H, W) -> (N, C) max over positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x, "max")
        return x.amax(dim=(2, 3))


class GeMPool(nn.Module):
    """Generalised mean ``(mean max(x, eps)^p)^(1/p)`` (Radenović et al.): p=1 is avg,
    p->inf is max. (N, C, H, W) -> (N, C); ``p`` is learnable when ``learnable``."""

    def __init__(self, p: float = PoolingConfig.GEM_P,
                 learnable: bool = PoolingConfig.GEM_LEARNABLE, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"MODEL.POOLING.GEM_P must be positive, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x, "gem")
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    @classmethod
    def from_config(cls, opts: PoolingConfig) -> "GeMPool":
        """``MODEL.POOLING.GEM_P`` and ``GEM_LEARNABLE``."""
        return cls(opts.GEM_P, opts.GEM_LEARNABLE)


class AttentionPool(nn.Module):
    """Softmax attention over positions from a 1x1 conv score: (N, C, H, W) -> (N, C).

    The score starts at zero, so the pooling starts as the average."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x, "attention")
        weights = F.softmax(self.score(x).flatten(2), dim=-1)  # (N, 1, HW)
        return (x.flatten(2) * weights).sum(-1)


class IdentityPool(nn.Module):
    """For backbones that already aggregate: vectors (N, C) and tokens (N, 1+k, C) pass
    unchanged; a (N, C, 1, 1) map is flattened to (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            if x.shape[2:] != (1, 1):
                raise ValueError(f"identity pooling got a feature map of shape "
                                 f"{tuple(x.shape)}; choose avg, max, gem or attention")
            return x.flatten(1)
        return x


# Each registered pooling is built as ``POOLINGS.get(name)(section, channels)`` from the
# ``MODEL.POOLING`` section and the backbone's output channels C.
@POOLINGS.register("avg", aliases=("avgpool", "gap"))
def build_avg(opts: PoolingConfig, channels: int) -> nn.Module:
    return AvgPool()


@POOLINGS.register("max", aliases=("maxpool", "gmp"))
def build_max(opts: PoolingConfig, channels: int) -> nn.Module:
    return MaxPool()


@POOLINGS.register("gem", aliases=("gempool", "gempoolp"))
def build_gem(opts: PoolingConfig, channels: int) -> nn.Module:
    return GeMPool.from_config(opts)


@POOLINGS.register("attention", aliases=("attn",))
def build_attention(opts: PoolingConfig, channels: int) -> nn.Module:
    return AttentionPool(channels)


@POOLINGS.register("identity", aliases=("flatten", "none"))
def build_identity(opts: PoolingConfig, channels: int) -> nn.Module:
    return IdentityPool()
