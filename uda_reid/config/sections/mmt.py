"""ADAPT.MMT section: Mutual Mean-Teaching (``mmt`` method).

Two networks, each with a mean teacher, learn from hard pseudo-labels (ADAPT.CLUSTER, one
granularity) and from the soft predictions of the other network's teacher. Defaults from
yxgeee/MMT (examples/mmt_train_kmeans.py, scripts/train_mmt_kmeans.sh, mmt/trainers.py).
"""
from __future__ import annotations

from uda_reid.config.schema import section


@section
class MMTConfig:
    # Loss of each network: (1 - SOFT_CE_WEIGHT) CE(hard labels) + SOFT_CE_WEIGHT CE(peer
    # teacher's softmax) + (1 - SOFT_TRIPLET_WEIGHT) triplet(hard labels) + SOFT_TRIPLET_WEIGHT
    # softmax triplet(peer teacher's); --soft-ce-weight 0.5 --soft-tri-weight 0.8.
    SOFT_CE_WEIGHT: float = 0.5
    SOFT_TRIPLET_WEIGHT: float = 0.8
    CE_EPSILON: float = 0.1  # label smoothing of the hard CE (CrossEntropyLabelSmooth)
    # Hard triplet margin; 0: the soft margin log(1 + exp(d_ap - d_an)) of the official
    # SoftTripletLoss(margin=0.0).
    TRIPLET_MARGIN: float = 0.0
    NUM_INSTANCES: int = 4  # K images per pseudo-identity in a PK batch (--num-instances)
    # 0: bias-free linear logits (the official classifier); > 0: cosine logits at this scale.
    # Either way every round starts the classifiers at the l2-normalised cluster centroids.
    CLS_SCALE: float = 0.0
    TEACHER_MOMENTUM: float = 0.999  # EMA alpha (--alpha)
    TEACHER_RAMP: bool = True  # alpha = min(1 - 1 / (step + 1), momentum) (_update_ema_variables)
