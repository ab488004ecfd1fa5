"""Models: registries of backbones, poolings, heads and classifier layers, and ReIDModel."""
from uda_reid.models import backbones, classifiers, heads, pooling  # noqa: F401  (registration)
from uda_reid.models.reid_model import ReIDModel, build_model
from uda_reid.models.weights import LoadReport, load_pretrained

__all__ = ["LoadReport", "ReIDModel", "build_model", "load_pretrained"]
