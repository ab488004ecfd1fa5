"""ECN's two-branch head (Zhong et al., CVPR 2019; zhunzhong07/ECN reid/models/resnet.py).

pooled (N, C) -> Linear(C, 4096) -> BN ->
  * source branch: ReLU -> Dropout(0.5) -> Linear(4096, #source ids) -> logits
  * target branch: l2-normalise -> Dropout(0.5) -> the feature compared with the exemplar memory
Retrieval uses the pooled backbone feature (the original's ``pool5``, ``eval_feature="before"``)
or the normalised 4096-d BN output (``"after"``).
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from uda_reid.config.sections.model import HeadsConfig, ModelConfig
from uda_reid.models.registry import HEADS

EVAL_FEATURES = ("before", "after")
EMBEDDING_DIM = 4096  # the original's width, used when MODEL.HEADS.EMBEDDING_DIM is 0


class ECNHead(nn.Module):
    """Training forward: ``{"logits": (N, num_classes), "features": (N, C) pooled,
    "embedding": (N, D) normalised-then-dropped target feature}``; eval: (N, C) or (N, D)."""

    def __init__(self, in_channels: int, num_classes: int, embedding_dim: int = EMBEDDING_DIM,
                 dropout: float = HeadsConfig.DROPOUT, eval_feature: str = "before") -> None:
        super().__init__()
        if eval_feature not in EVAL_FEATURES:
            raise ValueError(f"ECN head eval_feature must be one of {EVAL_FEATURES}, "
                             f"got {eval_feature!r}")
        if num_classes <= 0:
            raise ValueError(f"ECN head needs the number of source ids, got {num_classes}")
        self.eval_feature = eval_feature
        self.feat = nn.Linear(in_channels, embedding_dim)
        self.feat_bn = nn.BatchNorm1d(embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(embedding_dim, num_classes)
        nn.init.kaiming_normal_(self.feat.weight, mode="fan_out")
        nn.init.zeros_(self.feat.bias)
        nn.init.ones_(self.feat_bn.weight)
        nn.init.zeros_(self.feat_bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    @property
    def embedding_dim(self) -> int:
        """Size of the training ``embedding`` (the target branch, ECN's memory features)."""
        return self.feat.out_features

    @property
    def out_dim(self) -> int:
        """Size of the retrieval embedding."""
        return self.feat.in_features if self.eval_feature == "before" else self.feat.out_features

    def forward(self, pooled: torch.Tensor, targets: Optional[torch.Tensor] = None
                ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        if not self.training:
            if self.eval_feature == "before":
                return pooled
            return F.normalize(self.feat_bn(self.feat(pooled)), dim=1)
        hidden = self.feat_bn(self.feat(pooled))
        target = self.drop(F.normalize(hidden, dim=1))
        logits = self.classifier(self.drop(F.relu(hidden)))
        return {"logits": logits, "features": pooled, "embedding": target}


@HEADS.register("ecn", aliases=("ecnhead",))
def build_ecn_head(opts: ModelConfig, in_channels: int, num_classes: int) -> ECNHead:
    """``MODEL.HEADS.EMBEDDING_DIM`` (0: the original's 4096), ``DROPOUT`` and ``NECK_FEAT``
    (retrieval feature: ``before`` = pool5 as the original, ``after`` = the normalised BN
    output)."""
    heads = opts.HEADS
    return ECNHead(in_channels, num_classes, heads.EMBEDDING_DIM or EMBEDDING_DIM, heads.DROPOUT,
                   heads.NECK_FEAT)
