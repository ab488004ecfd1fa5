"""SOLVER section: optimiser, schedule, freezing, checkpoints (FastReID semantics)."""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class SolverConfig:
    OPT: str = "Adam"  # SGD | Adam | AdamW
    BASE_LR: float = 3.5e-4
    BIAS_LR_FACTOR: float = 1.0
    HEADS_LR_FACTOR: float = 1.0  # every parameter outside the backbone
    BACKBONE_LR_FACTOR: float = 1.0
    MOMENTUM: float = 0.9  # SGD momentum; Adam/AdamW beta1
    NESTEROV: bool = False
    WEIGHT_DECAY: float = 5e-4
    WEIGHT_DECAY_NORM: float = 5e-4  # parameters of normalisation layers
    WEIGHT_DECAY_BIAS: float = 5e-4  # biases (norm layers' included)
    IMS_PER_BATCH: int = 64
    MAX_EPOCH: int = 120
    ITERS_PER_EPOCH: int = 0  # 0: one pass of the training loader
    SCHED: str = "MultiStepLR"  # MultiStepLR | CosineAnnealingLR
    SCHED_UNIT: str = "epoch"  # epoch: steps at epoch ends (FastReID) | iter: every iteration
    STEPS: Tuple[int, ...] = (40, 90)  # epochs counted from the end of warm-up/delay
    GAMMA: float = 0.1
    DELAY_EPOCHS: int = 0  # the main schedule starts after max(warm-up epochs, DELAY_EPOCHS)
    ETA_MIN_LR: float = 1e-7
    WARMUP_FACTOR: float = 0.1
    WARMUP_ITERS: int = 0
    WARMUP_METHOD: str = "linear"  # linear | constant
    FREEZE_ITERS: int = 0
    FREEZE_LAYERS: Tuple[str, ...] = ()  # module names, e.g. ("backbone",)
    CHECKPOINT_PERIOD: int = 10  # epochs; last.pth is also written at the end
    AMP: bool = True  # only on CUDA
