"""Every module in this package registers its components on import."""
from uda_reid.utils.registry import import_submodules

import_submodules(__name__, __path__)
