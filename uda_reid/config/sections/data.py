"""INPUT, DATASETS and DATALOADER sections."""
from __future__ import annotations

from dataclasses import field
from typing import Tuple

from uda_reid.config.schema import section


@section
class FlipConfig:
    ENABLED: bool = True
    PROB: float = 0.5


@section
class PaddingConfig:
    ENABLED: bool = True
    SIZE: int = 10


@section
class RandomErasingConfig:
    ENABLED: bool = False
    PROB: float = 0.5


@section
class AutoAugmentConfig:
    ENABLED: bool = False
    PROB: float = 0.0


@section
class InputConfig:
    SIZE_TRAIN: Tuple[int, int] = (256, 128)  # (height, width)
    SIZE_TEST: Tuple[int, int] = (256, 128)
    FLIP: FlipConfig = field(default_factory=FlipConfig)
    PADDING: PaddingConfig = field(default_factory=PaddingConfig)
    REA: RandomErasingConfig = field(default_factory=RandomErasingConfig)
    AUTOAUG: AutoAugmentConfig = field(default_factory=AutoAugmentConfig)
    PIXEL_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    PIXEL_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


@section
class DatasetsConfig:
    ROOT: str = "data"
    NAMES: Tuple[str, ...] = ("synth-market",)
    TESTS: Tuple[str, ...] = ("synth-market",)
    SYNTH_SCALE: str = "default"  # tiny | default
    SYNTH_SEED: int = 0


@section
class DataloaderConfig:
    SAMPLER: str = "pk"  # pk | random
    NUM_INSTANCE: int = 4
    NUM_WORKERS: int = 2
