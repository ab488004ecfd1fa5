"""SOLVER section: optimiser, schedule, freezing, checkpoints."""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class SolverConfig:
    OPT: str = "Adam"  # SGD | Adam | AdamW
    BASE_LR: float = 3.5e-4
    BIAS_LR_FACTOR: float = 1.0
    HEADS_LR_FACTOR: float = 1.0
    BACKBONE_LR_FACTOR: float = 1.0
    MOMENTUM: float = 0.9
    NESTEROV: bool = False
    WEIGHT_DECAY: float = 5e-4
    WEIGHT_DECAY_NORM: float = 5e-4
    WEIGHT_DECAY_BIAS: float = 5e-4
    IMS_PER_BATCH: int = 64
    MAX_EPOCH: int = 120
    ITERS_PER_EPOCH: int = 0  # 0: one pass over the training images
    SCHED: str = "MultiStepLR"  # MultiStepLR | CosineAnnealingLR
    STEPS: Tuple[int, ...] = (40, 90)
    GAMMA: float = 0.1
    ETA_MIN_LR: float = 1e-7
    WARMUP_FACTOR: float = 0.1
    WARMUP_ITERS: int = 0
    WARMUP_METHOD: str = "linear"
    FREEZE_ITERS: int = 0
    FREEZE_LAYERS: Tuple[str, ...] = ()
    CHECKPOINT_PERIOD: int = 10  # epochs
    AMP: bool = True  # only on CUDA
