"""The tiny synthetic stage 1 the adaptation tests share: CPU, 32x16 images, two iterations."""
from typing import List


def tiny_stage1(data_root, source_cache) -> List[str]:
    """``KEY VALUE`` overrides for a seconds-long source model under ``data_root``, cached in
    ``source_cache``."""
    return ["DATASETS.ROOT", str(data_root), "DATASETS.SYNTH_SCALE", "tiny",
            "ADAPT.SOURCE_CACHE", str(source_cache), "MODEL.DEVICE", "cpu",
            "INPUT.SIZE_TRAIN", "(32, 16)", "INPUT.SIZE_TEST", "(32, 16)",
            "MODEL.HEADS.EMBEDDING_DIM", "32", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "2"]
