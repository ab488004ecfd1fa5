"""ADAPT.MLT section: training on clustering pseudo-labels (``cluster`` and ``mlt`` methods).

``cluster`` trains on one granularity of ADAPT.CLUSTER (the one at ``TRIPLET_GRANULARITY``),
``mlt`` on all of them (one classifier per granularity). The clustering itself (Jaccard
distance, backend, granularities, outlier policy) is ADAPT.CLUSTER.
"""
from __future__ import annotations

from uda_reid.config.schema import section


@section
class MLTConfig:
    CE_EPSILON: float = 0.1  # label smoothing of every pseudo-label (and source) classifier
    CE_SCALE: float = 1.0  # weight of the mean CE over granularities
    TRIPLET_MARGIN: float = 0.3  # batch-hard triplet (FastReID Base-bagtricks: margin 0.3)
    TRIPLET_SCALE: float = 1.0
    # Index (into the granularities) of the labels driving the PK sampler and the triplet.
    TRIPLET_GRANULARITY: int = 0
    NUM_INSTANCES: int = 4  # K images per pseudo-identity in a PK batch
    # 0: bias-free linear logits over the retrieval feature (BNNeck style); > 0: cosine
    # logits scaled by this value. Either way the weights start at the l2-normalised centroids.
    CLS_SCALE: float = 0.0
    # "Mixture": a labelled source PK batch joins every target batch (one forward pass);
    # the model's own source classifier and the triplet train on it.
    MIXTURE: bool = False
    SOURCE_IMS_PER_BATCH: int = 0  # 0: ADAPT.SOLVER.IMS_PER_BATCH
