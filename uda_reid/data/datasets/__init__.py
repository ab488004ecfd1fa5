"""Datasets by name: every module in this package registers its datasets on import."""
from __future__ import annotations

from uda_reid.data.datasets.base import DatasetLayoutError, ReIDDataset, Sample, with_pids
from uda_reid.data.datasets.registry import DATASETS
from uda_reid.utils.registry import import_submodules

import_submodules(__name__, __path__)


def build_dataset(name: str, root: str = "data", synth_scale: str = "default",
                  synth_seed: int = 0, synth_version: int = 1) -> ReIDDataset:
    """The dataset registered as ``name`` (or an alias) under ``root``.

    ``synth_scale``/``synth_seed``/``synth_version`` choose the generated copy of a synthetic
    domain and are ignored for real datasets.
    """
    cls = DATASETS.get(name)
    if hasattr(cls, "from_config"):
        raise ValueError(f"Dataset '{name}' is configured in the DATASETS section: build it "
                         "with build_dataset_from_config")
    if getattr(cls, "synthetic", False):
        return cls(root, synth_scale=synth_scale, synth_seed=synth_seed,
                   synth_version=synth_version)
    return cls(root)


def build_dataset_from_config(cfg, name: str) -> ReIDDataset:
    """:func:`build_dataset` with ``DATASETS.ROOT``/``SYNTH_*``; a dataset
    class with a ``from_config`` classmethod reads its options from the ``DATASETS`` section
    itself (e.g. ``custom``: ``DATASETS.CUSTOM.*``)."""
    cls = DATASETS.get(name)
    if hasattr(cls, "from_config"):
        return cls.from_config(cfg.DATASETS)
    return build_dataset(name, cfg.DATASETS.ROOT, cfg.DATASETS.SYNTH_SCALE,
                         cfg.DATASETS.SYNTH_SEED, cfg.DATASETS.SYNTH_VERSION)


__all__ = ["DATASETS", "DatasetLayoutError", "ReIDDataset", "Sample", "build_dataset",
           "build_dataset_from_config", "with_pids"]
