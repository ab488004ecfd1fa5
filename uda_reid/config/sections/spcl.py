"""ADAPT.SPCL section: Self-paced Contrastive Learning (``spcl`` method).

Defaults from the official code (yxgeee/SpCL ``examples/spcl_train_uda.py`` argparse defaults,
``spcl/models/hm.py``). The clustering (Jaccard k1/k2, DBSCAN eps and min_samples) is
ADAPT.CLUSTER's; SpCL clusters at its first EPS and at that eps -/+ EPS_GAP.
"""
from __future__ import annotations

from uda_reid.config.schema import section


@section
class SpCLConfig:
    TEMPERATURE: float = 0.05  # --temp: logits = similarity / temperature
    MOMENTUM: float = 0.2  # --momentum: slot <- normalise(m slot + (1 - m) feature)
    # --eps-gap: the tighter and looser clusterings run at eps - EPS_GAP and eps + EPS_GAP
    EPS_GAP: float = 0.02
    # Self-paced refinement (independence + compactness); False: every DBSCAN cluster is used
    # and only DBSCAN's outliers are un-clustered instances.
    SELF_PACED: bool = True
    # A cluster is independent when its IoU with its cluster at the looser eps reaches a
    # threshold fixed in the first round so that this fraction of the clusters (of two or more
    # images) passes (the official code hard-codes 0.9).
    INDEP_QUANTILE: float = 0.9
    NUM_INSTANCES: int = 4  # --num-instances: images per pseudo-identity / source identity
    SOURCE_IMS_PER_BATCH: int = 0  # 0: ADAPT.SOLVER.IMS_PER_BATCH (official: -b 64 for both)
    # Domain-specific BatchNorm over the joint source + target forward pass (the official
    # create_model converts every BatchNorm with convert_dsbn); False: one shared BatchNorm.
    DSBN: bool = True
