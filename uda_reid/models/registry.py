"""Model component registries."""
from uda_reid.utils.registry import Registry

BACKBONES = Registry("backbone")
POOLINGS = Registry("pooling")
HEADS = Registry("head")
CLS_LAYERS = Registry("classifier layer")
