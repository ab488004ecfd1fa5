"""ADAPT.CLUSTER section: pseudo-labels by clustering (cluster / mlt methods)."""
from __future__ import annotations

from typing import Tuple

from uda_reid.config.schema import section


@section
class ClusterConfig:
    BACKEND: str = "dbscan"  # dbscan | hdbscan | kmeans
    K1: int = 30
    K2: int = 6
    EPS: Tuple[float, ...] = (0.6,)  # one value per granularity (dbscan)
    MIN_SAMPLES: int = 4
    NUM_CLUSTERS: Tuple[int, ...] = (500,)  # one value per granularity (kmeans)
    OUTLIERS: str = "drop"  # drop | singleton
