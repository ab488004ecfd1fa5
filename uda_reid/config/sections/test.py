"""TEST section: evaluation options (read by :func:`uda_reid.evaluation.evaluate_from_section`)."""
from __future__ import annotations

from dataclasses import field
from typing import Tuple

from uda_reid.config.schema import section


@section
class RerankConfig:
    ENABLED: bool = False  # k-reciprocal re-ranking (Zhong et al., CVPR 2017)
    K1: int = 20
    K2: int = 6
    LAMBDA: float = 0.3


@section
class QueryExpansionConfig:
    ENABLED: bool = False
    K: int = 5  # top gallery neighbours summed into each query
    ALPHA: float = 0.0  # 0: average QE; > 0: alpha-QE, a neighbour weighs max(sim, 0) ** ALPHA
    DATABASE: bool = False  # also expand each gallery feature by its gallery neighbours (DBA)


@section
class RocConfig:
    ENABLED: bool = False
    FPRS: Tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    FASTREID_COMPAT: bool = False  # report FastReID's operating point (see evaluation/roc.py)


@section
class TestConfig:
    EVAL_PERIOD: int = 10  # epochs
    IMS_PER_BATCH: int = 128
    METRIC: str = "cosine"  # cosine | euclidean
    FLIP: bool = False  # average the features of the image and its mirror
    PROTOCOL: str = "market1501"  # market1501 | cuhk03 (single-shot CMC)
    MAX_RANK: int = 50
    SKIP_NO_MATCH: bool = True  # False: queries with no valid match count as zero (Matlab)
    RERANK: RerankConfig = field(default_factory=RerankConfig)
    QE: QueryExpansionConfig = field(default_factory=QueryExpansionConfig)
    ROC: RocConfig = field(default_factory=RocConfig)
