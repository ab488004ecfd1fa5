"""JPM head (TransReID): one embedding head per feature of a (N, 1 + k, D) backbone output."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from uda_reid.config.sections.model import ModelConfig
from uda_reid.models.heads.embedding import build_bnneck
from uda_reid.models.registry import HEADS


def jpm_embedding(global_embedding: Tensor, local_embeddings: Sequence[Tensor]) -> Tensor:
    """Test feature of TransReID: ``[global, local_1 / k, ..., local_k / k]``.

    ``global_embedding`` (N, D) and k tensors (N, D) -> (N, (1 + k) D). Dividing the local
    parts by k gives them together the weight of the global feature in a dot product.
    """
    k = len(local_embeddings)
    return torch.cat([global_embedding, *(e / k for e in local_embeddings)], dim=1)


class JPMHead(nn.Module):
    """Runs ``branches[i]`` on feature i of ``features`` (N, 1 + k, D): global, then k local.

    Each branch is an ordinary embedding head (BNNeck + bias-free classifier). Training
    returns ``{"logits", "features", "embedding"}`` with lists ``[global, local_1..k]`` as
    values (the losses weight them 0.5 global + 0.5 mean local); eval returns
    :func:`jpm_embedding` of the branches' embeddings, (N, (1 + k) D).
    """

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(branches) < 2:
            raise ValueError(f"The JPM head needs a global and at least one local branch, "
                             f"got {len(branches)}")
        self.branches = nn.ModuleList(branches)

    def forward(self, features: Tensor, targets: Optional[Tensor] = None
                ) -> Union[Tensor, Dict[str, List[Tensor]]]:
        if features.dim() != 3 or features.shape[1] != len(self.branches):
            raise ValueError(f"The JPM head expects (N, {len(self.branches)}, D) features "
                             f"(global + {len(self.branches) - 1} local), got "
                             f"{tuple(features.shape)}; is MODEL.TRANSREID.JPM on?")
        outputs = [branch(features[:, i], targets) for i, branch in enumerate(self.branches)]
        if not self.training:
            return jpm_embedding(outputs[0], outputs[1:])
        return {key: [out[key] for out in outputs] for key in outputs[0]}


@HEADS.register("jpm", aliases=("jpmhead",))
def build_jpm_head(opts: ModelConfig, in_channels: int, num_classes: int) -> JPMHead:
    """A BNNeck head (``MODEL.HEADS``) for the global and each of the
    ``MODEL.TRANSREID.DEVIDE_LENGTH`` local features."""
    if not opts.TRANSREID.JPM:
        raise ValueError("MODEL.HEADS.NAME is 'jpm' but MODEL.TRANSREID.JPM is off: the backbone "
                         "returns one feature; use the 'bnneck' head or turn JPM on")
    return JPMHead([build_bnneck(opts, in_channels, num_classes)
                    for _ in range(1 + opts.TRANSREID.DEVIDE_LENGTH)])
