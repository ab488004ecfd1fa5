"""Loss registry."""
from uda_reid.utils.registry import Registry

LOSSES = Registry("loss")
