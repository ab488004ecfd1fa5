"""Datasets by name: every module in this package registers its datasets on import."""
from __future__ import annotations

from uda_reid.config.sections.data import DatasetsConfig
from uda_reid.data.datasets.base import DatasetLayoutError, ReIDDataset, Sample, with_pids
from uda_reid.data.datasets.registry import DATASETS
from uda_reid.utils.registry import import_submodules

import_submodules(__name__, __path__)


def build_dataset(name: str, root: str = DatasetsConfig.ROOT,
                  synth_scale: str = DatasetsConfig.SYNTH_SCALE,
                  synth_seed: int = DatasetsConfig.SYNTH_SEED,
                  synth_version: int = DatasetsConfig.SYNTH_VERSION) -> ReIDDataset:
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


def build_dataset_from_section(opts: DatasetsConfig, name: str) -> ReIDDataset:
    """:func:`build_dataset` with the ``DATASETS`` section's ``ROOT``/``SYNTH_*``; a dataset
    class with a ``from_config`` classmethod reads its options from the section itself (e.g.
    ``custom``: ``DATASETS.CUSTOM.*``)."""
    cls = DATASETS.get(name)
    if hasattr(cls, "from_config"):
        return cls.from_config(opts)
    return build_dataset(name, opts.ROOT, opts.SYNTH_SCALE, opts.SYNTH_SEED, opts.SYNTH_VERSION)


def build_dataset_from_config(cfg, name: str) -> ReIDDataset:
    """Entry point for the run flows: :func:`build_dataset_from_section` of ``cfg.DATASETS``."""
    return build_dataset_from_section(cfg.DATASETS, name)


__all__ = ["DATASETS", "DatasetLayoutError", "ReIDDataset", "Sample", "build_dataset",
           "build_dataset_from_config", "build_dataset_from_section", "with_pids"]
