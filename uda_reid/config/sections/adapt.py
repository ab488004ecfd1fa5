"""ADAPT section: target-domain adaptation methods."""
from __future__ import annotations

from dataclasses import field

from uda_reid.config.schema import section
from uda_reid.config.sections.cluster import ClusterConfig


@section
class ECNConfig:
    LAMBDA: float = 0.3  # (1-lambda)*L_source + lambda*L_target
    TEMPERATURE: float = 0.05
    KNN: int = 6
    NEIGHBOR_START_EPOCH: int = 5  # the original uses epoch > 4 (0-based)
    MOMENTUM_PER_EPOCH: float = 0.01  # alpha = 0.01 * epoch
    CAMSTYLE: bool = True


@section
class AdaptConfig:
    METHOD: str = "direct"
    SOURCE: str = "synth-market"
    TARGET: str = "synth-duke"
    ECN: ECNConfig = field(default_factory=ECNConfig)
    CLUSTER: ClusterConfig = field(default_factory=ClusterConfig)
