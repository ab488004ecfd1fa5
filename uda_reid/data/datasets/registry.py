"""Dataset registry (names and short aliases, e.g. ``market1501`` / ``market``)."""
from uda_reid.utils.registry import Registry

DATASETS = Registry("dataset")
