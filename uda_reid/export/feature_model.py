"""The test-time feature path of a ReID model as a single-input module, ready to export."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from uda_reid.models.backbones.vit import VisionTransformerReID


def check_exportable(model: nn.Module) -> None:
    """An exported graph takes images only: a side-information embedding that needs camera
    or view ids at test time (SIE on the training cameras, or the ``map`` target policy) is an
    error naming the config keys; SIE with the ``mean`` / ``off`` target policy exports."""
    for module in model.modules():
        if not isinstance(module, VisionTransformerReID) or module.sie is None:
            continue
        sie = module.sie
        if sie.num_views:
            raise ValueError("Export takes images only, but MODEL.TRANSREID.SIE_VIEW needs view "
                             "ids at test time; export a model trained without it")
        if sie.num_cameras and (sie.domain == "source" or sie.target_policy == "map"):
            raise ValueError("Export takes images only, but MODEL.TRANSREID.SIE_CAMERA reads "
                             "camera ids on this test set (its cameras are the training "
                             "cameras, or SIE_TARGET_POLICY is 'map'); export for another domain "
                             "with SIE_TARGET_POLICY 'mean' or 'off', or train without "
                             "SIE_CAMERA")


class RetrievalFeatures(nn.Module):
    """images (N, 3, H, W), normalised as the test loader gives them -> the retrieval
    embedding (N, D) float32 of ``model`` in eval mode, as the evaluation extracts it; with
    ``flip`` the mean of the image's and its mirror's embeddings (``TEST.FLIP``).

    ``model`` is copied: the export does not change the caller's model (mode, SIE domain).
    """

    def __init__(self, model: nn.Module, flip: bool = False) -> None:
        super().__init__()
        check_exportable(model)
        self.model = copy.deepcopy(model).eval()
        self.flip = flip

    def forward(self, images: Tensor) -> Tensor:
        features = self.model(images).float()
        if self.flip:
            features = (features + self.model(torch.flip(images, dims=[3])).float()) / 2
        return features
