"""CAMSTYLE section: StarGAN camera-style transfer."""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class CamStyleConfig:
    IMAGE_SIZE: Tuple[int, int] = (128, 64)
    BATCH_SIZE: int = 16
    MAX_ITERS: int = 200000
