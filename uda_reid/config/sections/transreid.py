"""MODEL.TRANSREID section: ViT backbone options (overlapping patches, SIE, JPM)."""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class TransReIDConfig:
    STRIDE_SIZE: Tuple[int, int] = (16, 16)
    DROP_PATH: float = 0.1
    SIE_CAMERA: bool = False
    SIE_VIEW: bool = False
    SIE_COEF: float = 3.0
    JPM: bool = False
    SHIFT_NUM: int = 5
    SHUFFLE_GROUP: int = 2
    DEVIDE_LENGTH: int = 4
