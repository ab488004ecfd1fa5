"""Adaptation method registry (``direct``, ``ecn``, ``cluster``, ``mlt``, ...)."""
from uda_reid.utils.registry import Registry

METHODS = Registry("adaptation method")
