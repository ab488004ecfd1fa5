"""Classifier layers: plain linear and the margin-softmax family (ArcFace, CosFace, Circle).

Each maps embeddings (N, D) and, in training, labels (N,) to logits (N, num_classes); the
margin is applied only where labels are given.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.config.sections.model import HeadsConfig
from uda_reid.models.registry import CLS_LAYERS


class LinearClassifier(nn.Module):
    """Bias-free linear logits ``x W^T`` (BNNeck's classifier)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.linear(x, self.weight)

    @classmethod
    def from_config(cls, opts: HeadsConfig, in_features: int, num_classes: int
                    ) -> "LinearClassifier":
        """The layer for ``MODEL.HEADS`` (no options of its own)."""
        return cls(in_features, num_classes)


class CosineClassifier(LinearClassifier):
    """Cosine logits ``s * cos(x, w)`` (normalised softmax); subclasses put a margin on the
    target class when labels are given. (N, D), (N,) -> (N, num_classes)."""

    def __init__(self, in_features: int, num_classes: int, scale: float,
                 margin: float = HeadsConfig.MARGIN) -> None:
        super().__init__(in_features, num_classes)
        self.scale, self.margin = scale, margin

    @classmethod
    def from_config(cls, opts: HeadsConfig, in_features: int, num_classes: int
                    ) -> "CosineClassifier":
        """``MODEL.HEADS.SCALE`` and ``MARGIN`` (the plain cosine layer has no margin)."""
        return cls(in_features, num_classes, opts.SCALE, opts.MARGIN)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def with_margin(self, cos: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Training logits from cosines (N, K) and one-hot labels (N, K)."""
        return self.scale * cos

    def forward(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        cos = self.cosine(x)
        if targets is None:
            return self.scale * cos
        onehot = F.one_hot(targets, cos.shape[1]).to(cos.dtype)
        return self.with_margin(cos, onehot)


class ArcFace(CosineClassifier):
    """ArcFace (Deng et al.): ``s * cos(theta + m)`` on the target class, ``s * cos`` elsewhere.

    Where ``theta + m`` would pass pi (``cos < cos(pi - m)``) the target logit continues as
    ``s * (cos - m sin m)``, which keeps it decreasing in ``theta`` (the paper's implementation).
    """

    def with_margin(self, cos: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        cos = cos.clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=0.0))
        shifted = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        fallback = cos - self.margin * math.sin(self.margin)
        target = torch.where(cos > math.cos(math.pi - self.margin), shifted, fallback)
        return self.scale * torch.where(onehot.bool(), target, cos)


class CosFace(CosineClassifier):
    """CosFace / AM-softmax (Wang et al.): ``s * (cos - m)`` on the target class."""

    def with_margin(self, cos: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.scale * (cos - self.margin * onehot)


class CircleSoftmax(CosineClassifier):
    """Circle loss in its classification form (Sun et al., CVPR 2020; FastReID's
    CircleSoftmax): self-paced weights ``a_p = [1 + m - cos]_+`` on the target class and
    ``a_n = [cos + m]_+`` elsewhere, with optima ``1 - m`` and ``m``."""

    def with_margin(self, cos: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        alpha_p = F.relu(1 + self.margin - cos.detach())
        alpha_n = F.relu(cos.detach() + self.margin)
        s_p = self.scale * alpha_p * (cos - (1 - self.margin))
        s_n = self.scale * alpha_n * (cos - self.margin)
        return onehot * s_p + (1 - onehot) * s_n


# Each registered layer is built as ``CLS_LAYERS.get(name)(section, in_features,
# num_classes)`` from the ``MODEL.HEADS`` section (``SCALE``, ``MARGIN``).
CLS_LAYERS.register("linear")(LinearClassifier.from_config)
CLS_LAYERS.register("cosine", aliases=("normsoftmax",))(CosineClassifier.from_config)
CLS_LAYERS.register("arcface", aliases=("arcsoftmax",))(ArcFace.from_config)
CLS_LAYERS.register("cosface", aliases=("cossoftmax", "amsoftmax"))(CosFace.from_config)
CLS_LAYERS.register("circle", aliases=("circlesoftmax",))(CircleSoftmax.from_config)
