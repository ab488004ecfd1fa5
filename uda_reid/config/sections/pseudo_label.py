"""ADAPT.PSEUDO_LABEL section: training on clustering pseudo-labels, shared by the ``cluster``
and ``mlt`` methods (losses, PK sampling, classifiers, source mixture, label transport, DSBN,
mean teacher).

``cluster`` trains on one granularity of ADAPT.CLUSTER (the one at ``TRIPLET_GRANULARITY``),
``mlt`` on all of them (one classifier per granularity). The clustering itself (Jaccard
distance, backend, granularities, outlier policy) is ADAPT.CLUSTER. The section was called
``ADAPT.MLT`` before; that name is deprecated and read as this one
(:mod:`uda_reid.config.renamed`).
"""
from __future__ import annotations

from uda_reid.config.schema import section


@section
class PseudoLabelConfig:
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
    # Weight of the source CE of the mixture; 0: the source rows only pass through the model
    # (e.g. to train the source BatchNorm of DSBN), no source loss, not in the triplet.
    SOURCE_SCALE: float = 1.0
    # Re-cluster at the start of every RECLUSTER_PERIOD-th epoch (1: every epoch). Between
    # re-clusterings the labels stay, or are refined by the label transport.
    RECLUSTER_PERIOD: int = 1
    # Label transport (Sinkhorn-Knopp, uda_reid/adapt/transport.py): "none"; "epoch": at the
    # start of every epoch that does not re-cluster, each granularity's labels become the
    # balanced assignment of the classifier's predictions over the whole target set (the
    # published schedule); "batch": within every batch, among the batch's own classes with
    # their batch counts as marginals, from the student's detached logits.
    TRANSPORT: str = "none"
    TRANSPORT_EPSILON: float = 0.04  # kernel exp(logits / epsilon); published lambda 25 = 1/0.04
    TRANSPORT_ITERS: int = 1000  # at most this many Sinkhorn iterations
    TRANSPORT_TOL: float = 1e-3  # stop once every cluster's mass is within this relative error
    # Per-epoch target cluster masses: "equal" (equipartition, published) or "sizes" (the
    # current cluster sizes).
    TRANSPORT_MARGINALS: str = "equal"
    # Domain-specific BatchNorm (needs MIXTURE): source and target rows of the mixed batch
    # normalised with their own statistics and affine parameters; the target's are evaluated
    # and exported.
    DSBN: bool = False
    # Mean teacher: EMA of the model's weights and buffers after every step; pseudo-labels,
    # transport, evaluation and checkpoints use the teacher.
    MEAN_TEACHER: bool = False
    TEACHER_MOMENTUM: float = 0.999
    TEACHER_RAMP: bool = True  # alpha = min(1 - 1 / (step + 1), momentum) (UDAStrongBaseline)
