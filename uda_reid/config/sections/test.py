"""TEST section: evaluation options."""
from __future__ import annotations

from dataclasses import field

from uda_reid.config.schema import section


@section
class RerankConfig:
    ENABLED: bool = False
    K1: int = 20
    K2: int = 6
    LAMBDA: float = 0.3


@section
class QueryExpansionConfig:
    ENABLED: bool = False
    K: int = 5  # number of top gallery items averaged into the query
    ALPHA: float = 0.0  # 0: average QE; > 0: alpha-QE weights sim**alpha


@section
class TestConfig:
    EVAL_PERIOD: int = 10  # epochs
    IMS_PER_BATCH: int = 128
    METRIC: str = "cosine"  # cosine | euclidean
    FLIP: bool = False
    ROC: bool = False
    MAX_RANK: int = 50
    SKIP_NO_MATCH: bool = True  # False: queries with no valid match count as zero (Matlab)
    RERANK: RerankConfig = field(default_factory=RerankConfig)
    QE: QueryExpansionConfig = field(default_factory=QueryExpansionConfig)
