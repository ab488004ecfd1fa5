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
class CustomDatasetConfig:
    """The dataset named ``custom``: each split is a list file (``<image> <pid> [<camid>]`` per
    line) or an image folder whose file names ``PATTERN`` parses. Relative paths start at
    ``DATASETS.ROOT``. Without camera ids every test image counts as its own camera."""

    TRAIN: str = ""
    QUERY: str = ""
    GALLERY: str = ""
    # Folders: a regex matched against whole file names, groups ``pid`` and optional ``camid``
    # (default: Market-1501 style, 0002_c1s1_000451_03.jpg); negative ids are junk, skipped.
    PATTERN: str = r"(?P<pid>-?\d+)_c(?P<camid>\d+).*"
    IMAGE_ROOT: str = ""  # list-file image paths are relative to it (default: the list's folder)


@section
class DatasetsConfig:
    ROOT: str = "data"
    NAMES: Tuple[str, ...] = ("synth-market",)
    TESTS: Tuple[str, ...] = ("synth-market",)
    SYNTH_SCALE: str = "default"  # tiny | default
    SYNTH_SEED: int = 0
    # Camera model of the synthetic domains: 1 global colour/blur/noise cameras; 2 adds
    # effects a colour shift cannot undo (illumination, viewpoint, sensor pattern, occluders,
    # time of day). synth-msmt exists in version 2 only and uses it under either value.
    SYNTH_VERSION: int = 1
    CUSTOM: CustomDatasetConfig = field(default_factory=CustomDatasetConfig)


@section
class DataloaderConfig:
    SAMPLER: str = "pk"  # pk | random
    NUM_INSTANCE: int = 4
    NUM_WORKERS: int = 2
