"""MODEL section: backbone -> pooling -> head, losses, weights."""
from __future__ import annotations

from dataclasses import field
from typing import Tuple

from uda_reid.config.schema import section
from uda_reid.config.sections.transreid import TransReIDConfig


@section
class BackboneConfig:
    NAME: str = "resnet50"
    LAST_STRIDE: int = 1
    WITH_IBN: bool = False
    WITH_NL: bool = False
    PRETRAIN: bool = False  # load PRETRAIN_PATH or PRETRAIN_NAME into the backbone
    PRETRAIN_PATH: str = ""  # a local weight file
    # torchvision:<Enum>.<MEMBER> (torch hub cache) or timm:<model>.<tag> (Hugging Face cache)
    PRETRAIN_NAME: str = ""
    PRETRAIN_DOWNLOAD: bool = False  # False: an uncached PRETRAIN_NAME is an error, not a download
    NORM: str = "BN"  # BN | syncBN (batch statistics shared across DDP processes)


@section
class PoolingConfig:
    NAME: str = "avg"
    GEM_P: float = 3.0
    GEM_LEARNABLE: bool = True


@section
class HeadsConfig:
    NAME: str = "bnneck"
    EMBEDDING_DIM: int = 0  # 0: keep the backbone's channels
    NECK_FEAT: str = "after"  # retrieval feature: "before" or "after" the BNNeck
    CLS_LAYER: str = "linear"  # linear | cosine | arcface | cosface | circle
    SCALE: float = 1.0
    MARGIN: float = 0.0
    NUM_CLASSES: int = 0  # 0: taken from the training data
    DROPOUT: float = 0.5  # ecn head: dropout of its source and target branches


@section
class CrossEntropyConfig:
    EPSILON: float = 0.1
    SCALE: float = 1.0


@section
class TripletConfig:
    MARGIN: float = 0.3  # 0: soft margin
    HARD_MINING: bool = True
    NORM_FEAT: bool = False  # cosine distance when True
    SCALE: float = 1.0


@section
class CircleConfig:
    MARGIN: float = 0.25
    GAMMA: float = 128.0
    SCALE: float = 1.0


@section
class LossesConfig:
    NAME: Tuple[str, ...] = ("CrossEntropyLoss", "TripletLoss")
    CE: CrossEntropyConfig = field(default_factory=CrossEntropyConfig)
    TRI: TripletConfig = field(default_factory=TripletConfig)
    CIRCLE: CircleConfig = field(default_factory=CircleConfig)


@section
class ModelConfig:
    DEVICE: str = "auto"  # auto | cpu | cuda | cuda:N
    WEIGHTS: str = ""
    # under torch.distributed: every BatchNorm (backbone and neck) normalises over the global
    # batch (all processes' images); no effect in one process
    SYNC_BN: bool = False
    BACKBONE: BackboneConfig = field(default_factory=BackboneConfig)
    POOLING: PoolingConfig = field(default_factory=PoolingConfig)
    HEADS: HeadsConfig = field(default_factory=HeadsConfig)
    LOSSES: LossesConfig = field(default_factory=LossesConfig)
    TRANSREID: TransReIDConfig = field(default_factory=TransReIDConfig)
