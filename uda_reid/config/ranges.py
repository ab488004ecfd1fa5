"""Lower bounds of the integer settings that have one, checked once when a config is loaded,
so that an out-of-range value is an error naming its key (not a failure deep in a sampler)."""
from __future__ import annotations

import functools
from typing import Any, Dict

from uda_reid.config.schema import ConfigError

_SOLVER = {"IMS_PER_BATCH": 1, "MAX_EPOCH": 1, "ITERS_PER_EPOCH": 0, "DELAY_EPOCHS": 0,
           "WARMUP_ITERS": 0, "FREEZE_ITERS": 0, "CHECKPOINT_PERIOD": 0}

MINIMA: Dict[str, int] = {
    **{f"SOLVER.{k}": v for k, v in _SOLVER.items()},
    **{f"ADAPT.SOLVER.{k}": v for k, v in _SOLVER.items()},
    "DATALOADER.NUM_INSTANCE": 1, "DATALOADER.NUM_WORKERS": 0,
    "TEST.IMS_PER_BATCH": 1, "TEST.EVAL_PERIOD": 0, "TEST.MAX_RANK": 1,
    "TEST.RERANK.K1": 1, "TEST.RERANK.K2": 1, "TEST.QE.K": 1,
    "MODEL.HEADS.EMBEDDING_DIM": 0, "MODEL.HEADS.NUM_CLASSES": 0,
    "ADAPT.ECN.KNN": 0, "ADAPT.ECN.TARGET_IMS_PER_BATCH": 0,
    "ADAPT.CLUSTER.K1": 1, "ADAPT.CLUSTER.K2": 1, "ADAPT.CLUSTER.MIN_SAMPLES": 1,
    "ADAPT.CLUSTER.KMEANS_ITERS": 1, "ADAPT.CLUSTER.KMEANS_REDO": 1,
    "ADAPT.PSEUDO_LABEL.NUM_INSTANCES": 1, "ADAPT.PSEUDO_LABEL.SOURCE_IMS_PER_BATCH": 0,
    "CAMSTYLE.BATCH_SIZE": 1, "CAMSTYLE.MAX_ITERS": 1, "CAMSTYLE.LR_DECAY_ITERS": 0,
    "CAMSTYLE.N_CRITIC": 1, "CAMSTYLE.NUM_WORKERS": 0, "CAMSTYLE.GEN_BATCH_SIZE": 1,
    "CAMSTYLE.JPEG_QUALITY": 1, "CAMSTYLE.EVAL.EPOCHS": 1,
    "CAMSTYLE.CYCLEGAN.NGF": 1, "CAMSTYLE.CYCLEGAN.NDF": 1, "CAMSTYLE.CYCLEGAN.G_BLOCKS": 0,
    "CAMSTYLE.CYCLEGAN.D_LAYERS": 1, "CAMSTYLE.CYCLEGAN.POOL_SIZE": 0,
    "CAMSTYLE.CYCLEGAN.BATCH_SIZE": 1, "CAMSTYLE.CYCLEGAN.EPOCHS": 0,
    "CAMSTYLE.CYCLEGAN.DECAY_EPOCHS": 0, "CAMSTYLE.CYCLEGAN.NUM_WORKERS": 0,
    "CAMSTYLE.CYCLEGAN.LOG_PERIOD": 1, "CAMSTYLE.CYCLEGAN.CHECKPOINT_PERIOD": 1,
    "CAMSTYLE.CYCLEGAN.SAMPLE_PERIOD": 1, "CAMSTYLE.CYCLEGAN.NUM_SAMPLE_IMAGES": 1,
}


def check_ranges(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first key of :data:`MINIMA` below its minimum, e.g.
    ``SOLVER.IMS_PER_BATCH must be positive, got 0``."""
    for key, minimum in MINIMA.items():
        value = functools.reduce(getattr, key.split("."), cfg)
        if value < minimum:
            bound = "positive" if minimum == 1 else f">= {minimum}"
            raise ConfigError(f"{key} must be {bound}, got {value}")
