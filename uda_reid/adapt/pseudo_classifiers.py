"""Classifiers over pseudo-labels: one per granularity, re-initialised from cluster centroids.

The number of clusters changes every round, but the optimiser and the checkpoints need fixed
parameters, so each granularity owns ``capacity`` rows (the number of target images, an upper
bound on the classes of any clustering) of which the first ``num_classes[h]`` are in use.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PseudoClassifiers(nn.Module):
    """``num_heads`` bias-free classifiers over features (N, D).

    scale 0: linear logits ``x W_h^T``; scale > 0: cosine logits ``scale * cos(x, W_h)``.
    ``weight`` (H, capacity, D) is a parameter; ``num_classes`` (H,) a buffer.
    """

    def __init__(self, num_heads: int, capacity: int, dim: int, scale: float) -> None:
        super().__init__()
        if num_heads < 1 or capacity < 1 or dim < 1:
            raise ValueError(f"PseudoClassifiers needs positive sizes, got {num_heads} heads, "
                             f"capacity {capacity}, dim {dim}")
        if scale < 0:
            raise ValueError(f"ADAPT.PSEUDO_LABEL.CLS_SCALE must be >= 0, got {scale}")
        self.scale = scale
        self.weight = nn.Parameter(torch.zeros(num_heads, capacity, dim))
        self.register_buffer("num_classes", torch.zeros(num_heads, dtype=torch.long))

    @property
    def num_heads(self) -> int:
        return self.weight.shape[0]

    @property
    def capacity(self) -> int:
        return self.weight.shape[1]

    @torch.no_grad()
    def reset(self, head: int, centroids: Union[np.ndarray, torch.Tensor]) -> None:
        """Head ``head`` classifies ``C`` classes with weights = l2-normalised centroids (C, D)."""
        c = F.normalize(torch.as_tensor(np.asarray(centroids), dtype=self.weight.dtype), dim=1)
        if c.dim() != 2 or c.shape[1] != self.weight.shape[2] or not 0 < len(c) <= self.capacity:
            raise ValueError(f"centroids {tuple(c.shape)} do not fit head {head}: expected "
                             f"(1..{self.capacity}, {self.weight.shape[2]})")
        self.weight[head].zero_()
        self.weight[head, :len(c)] = c.to(self.weight.device)
        self.num_classes[head] = len(c)

    def forward(self, head: int, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes[head]) of features x (N, D)."""
        w = self.weight[head, :int(self.num_classes[head])]
        if self.scale > 0:
            return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(w, dim=1))
        return F.linear(x, w)
