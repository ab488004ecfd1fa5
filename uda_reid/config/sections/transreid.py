"""MODEL.TRANSREID section: ViT backbone options (overlapping patches, SIE, JPM).

Defaults are the official TransReID code's (config/defaults.py of heshuting555/TransReID)
except ``STRIDE_SIZE``, whose default 16 is the non-overlapping ViT baseline; the paper's
TransReID* uses 12.
"""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class TransReIDConfig:
    PATCH_SIZE: int = 16  # P: must match a pretrained checkpoint's patch_embed
    STRIDE_SIZE: Tuple[int, int] = (16, 16)  # S (rows, cols): < P overlaps patches
    DROP_PATH: float = 0.1  # stochastic depth, rising linearly to this over the blocks
    SIE_CAMERA: bool = False  # camera side-information embedding
    SIE_VIEW: bool = False  # viewpoint side-information embedding (needs view ids)
    SIE_COEF: float = 3.0  # lambda scaling the SIE added to every token
    NUM_CAMERAS: int = 0  # source cameras the SIE table is sized by (needed with SIE_CAMERA)
    NUM_VIEWS: int = 0  # viewpoints (needed with SIE_VIEW)
    # Cameras of another domain (set_sie_domain("target")): off | mean | map
    SIE_TARGET_POLICY: str = "mean"
    SIE_CAMERA_MAP: Tuple[int, ...] = ()  # policy "map": target camera i -> source camera [i]
    JPM: bool = False  # jigsaw patch module: (N, 1 + k, D) features
    RE_ARRANGE: bool = True  # JPM shift + shuffle; False: k contiguous groups
    SHIFT_NUM: int = 5  # m: patches moved to the end (8 for vehicles)
    SHUFFLE_GROUP: int = 2  # chunks interleaved by the patch shuffle
    DEVIDE_LENGTH: int = 4  # k: local groups (spelling as in the official code)
