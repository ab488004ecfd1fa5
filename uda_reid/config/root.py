"""The root config: every section with its defaults."""
from __future__ import annotations

from dataclasses import field

from uda_reid.config.schema import section
from uda_reid.config.sections.adapt import AdaptConfig, adapt_config
from uda_reid.config.sections.camstyle import CamStyleConfig
from uda_reid.config.sections.data import DataloaderConfig, DatasetsConfig, InputConfig
from uda_reid.config.sections.model import ModelConfig
from uda_reid.config.sections.solver import SolverConfig
from uda_reid.config.sections.test import TestConfig


@section
class Config:
    MODEL: ModelConfig = field(default_factory=ModelConfig)
    INPUT: InputConfig = field(default_factory=InputConfig)
    DATASETS: DatasetsConfig = field(default_factory=DatasetsConfig)
    DATALOADER: DataloaderConfig = field(default_factory=DataloaderConfig)
    SOLVER: SolverConfig = field(default_factory=SolverConfig)
    TEST: TestConfig = field(default_factory=TestConfig)
    ADAPT: AdaptConfig = field(default_factory=adapt_config)
    CAMSTYLE: CamStyleConfig = field(default_factory=CamStyleConfig)
    OUTPUT_DIR: str = "output"
    SEED: int = 0
    CUDNN_DETERMINISTIC: bool = False
