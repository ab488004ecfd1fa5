"""Embedding heads: BNNeck (Luo et al., BoT), linear, and reduction heads."""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import nn

from uda_reid.config.sections.model import HeadsConfig, ModelConfig
from uda_reid.models.registry import CLS_LAYERS, HEADS

NECK_FEATS = ("before", "after")


class EmbeddingHead(nn.Module):
    """pooled (N, C) -> [reduction] -> features (N, D) -> [bias-free BN] -> embedding -> logits.

    Training returns ``{"logits", "features" (pre-BN, for triplet), "embedding"}``; eval
    returns the retrieval embedding: after the BNNeck (``neck_feat="after"``) or before it.
    The BN's bias is frozen at zero (BoT). Without BNNeck, features and embedding coincide.
    """

    def __init__(self, in_channels: int, classifier: nn.Module,
                 embedding_dim: int = HeadsConfig.EMBEDDING_DIM, with_bnneck: bool = True,
                 neck_feat: str = HeadsConfig.NECK_FEAT, reduction_act: bool = False) -> None:
        super().__init__()
        if neck_feat not in NECK_FEATS:
            raise ValueError(f"MODEL.HEADS.NECK_FEAT must be one of {NECK_FEATS}, "
                             f"got {neck_feat!r}")
        self.reduction: nn.Module = nn.Identity()
        if embedding_dim:
            layers = [nn.Linear(in_channels, embedding_dim, bias=False)]
            if reduction_act:
                layers += [nn.BatchNorm1d(embedding_dim), nn.LeakyReLU(0.1)]
            self.reduction = nn.Sequential(*layers)
        self.out_dim = embedding_dim or in_channels
        self.bnneck: nn.Module = nn.Identity()
        if with_bnneck:
            bn = nn.BatchNorm1d(self.out_dim)
            bn.bias.requires_grad_(False)
            self.bnneck = bn
        self.neck_feat = neck_feat
        self.classifier = classifier

    def forward(self, pooled: torch.Tensor, targets: Optional[torch.Tensor] = None
                ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        if pooled.dim() != 2:
            raise ValueError(f"The embedding head needs pooled vectors (N, C), got shape "
                             f"{tuple(pooled.shape)}; token outputs need the 'jpm' head")
        features = self.reduction(pooled)
        embedding = self.bnneck(features)
        if not self.training:
            return embedding if self.neck_feat == "after" else features
        return {"logits": self.classifier(embedding, targets), "features": features,
                "embedding": embedding}


def head_classifier(opts: HeadsConfig, in_features: int, num_classes: int) -> nn.Module:
    """The ``MODEL.HEADS.CLS_LAYER`` layer mapping (N, in_features) to (N, num_classes)."""
    if num_classes <= 0:
        raise ValueError(f"The head needs the number of training classes, got {num_classes}")
    return CLS_LAYERS.get(opts.CLS_LAYER)(opts, in_features, num_classes)


# Each registered head is built as ``HEADS.get(name)(section, in_channels, num_classes)`` from
# the ``MODEL`` section (its ``HEADS``; the JPM head also reads ``TRANSREID``).
@HEADS.register("bnneck", aliases=("embeddinghead", "bnneckhead"))
def build_bnneck(opts: ModelConfig, in_channels: int, num_classes: int) -> EmbeddingHead:
    heads = opts.HEADS
    dim = heads.EMBEDDING_DIM
    return EmbeddingHead(in_channels, head_classifier(heads, dim or in_channels, num_classes),
                         dim, True, heads.NECK_FEAT)


@HEADS.register("linear", aliases=("linearhead",))
def build_linear_head(opts: ModelConfig, in_channels: int, num_classes: int) -> EmbeddingHead:
    heads = opts.HEADS
    dim = heads.EMBEDDING_DIM
    return EmbeddingHead(in_channels, head_classifier(heads, dim or in_channels, num_classes),
                         dim, False, "before")


@HEADS.register("reduction", aliases=("reductionhead",))
def build_reduction_head(opts: ModelConfig, in_channels: int, num_classes: int
                         ) -> EmbeddingHead:
    heads = opts.HEADS
    dim = heads.EMBEDDING_DIM or 512
    return EmbeddingHead(in_channels, head_classifier(heads, dim, num_classes), dim, True,
                         heads.NECK_FEAT, reduction_act=True)
