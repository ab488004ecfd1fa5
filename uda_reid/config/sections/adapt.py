"""ADAPT section: target-domain adaptation (stage 1 source model, stage 2 the method)."""
from __future__ import annotations

from dataclasses import field
from typing import Tuple

from uda_reid.config.schema import section
from uda_reid.config.sections.cluster import ClusterConfig
from uda_reid.config.sections.mlt import MLTConfig
from uda_reid.config.sections.mmt import MMTConfig
from uda_reid.config.sections.solver import SolverConfig


@section
class ECNConfig:
    # Defaults from zhunzhong07/ECN main.py / reid/loss/invariance.py / reid/trainers.py.
    LAMBDA: float = 0.3  # (1-lambda)*L_source + lambda*L_target (--lmd)
    TEMPERATURE: float = 0.05  # --inv-beta
    KNN: int = 6  # --knn; 0 turns neighbourhood invariance off
    NEIGHBOR_START_EPOCH: int = 5  # the original uses epoch > 4 (0-based)
    MOMENTUM_PER_EPOCH: float = 0.01  # memory update rate alpha = 0.01 * epoch (--inv-alpha)
    CAMSTYLE: bool = True  # camera invariance from <target root>/bounding_box_train_camstyle
    TARGET_IMS_PER_BATCH: int = 0  # 0: ADAPT.SOLVER.IMS_PER_BATCH (the original: 128 and 128)
    # Stage 2's source branch: "ce" the original's plain cross-entropy, or "model" the stage-1
    # losses of MODEL.LOSSES; batches "random" (shuffled, the original) or "pk" (identities x
    # DATALOADER.NUM_INSTANCE images).
    SOURCE_LOSS: str = "ce"
    SOURCE_SAMPLER: str = "random"
    # Module-name prefixes that do not train, their BatchNorms kept in eval mode (original:
    # conv1 .. layer2 of the ResNet).
    FROZEN: Tuple[str, ...] = ("backbone.conv1", "backbone.bn1", "backbone.layer1",
                               "backbone.layer2")


@section
class ClusterContrastConfig:
    # Cluster Contrast (alibaba/cluster-contrast-reid); clustering is ADAPT.CLUSTER's.
    TEMPERATURE: float = 0.05  # examples/cluster_contrast_train_usl.py --temp
    MOMENTUM: float = 0.1  # centroid momentum (README.md commands; the script's default is 0.2)
    MODE: str = "mean"  # mean (cm.py CM) | hardest (cm.py CM_Hard, --use-hard)
    NUM_INSTANCES: int = 16  # images per pseudo-identity in a PK batch (README.md commands)


@section
class AdaptConfig:
    METHOD: str = "direct"
    SOURCE: str = "synth-market"
    TARGET: str = "synth-duke"
    # Stage-1 source models are cached here, one folder per hash of the source config.
    SOURCE_CACHE: str = "output/source_models"
    # Optimiser and schedule of stage 2 (SOLVER is stage 1's).
    SOLVER: SolverConfig = field(default_factory=SolverConfig)
    ECN: ECNConfig = field(default_factory=ECNConfig)
    CLUSTER: ClusterConfig = field(default_factory=ClusterConfig)
    MLT: MLTConfig = field(default_factory=MLTConfig)
    CC: ClusterContrastConfig = field(default_factory=ClusterContrastConfig)
    MMT: MMTConfig = field(default_factory=MMTConfig)
