"""Direct transfer: the source-trained model evaluated on the target, no adaptation."""
from __future__ import annotations

from uda_reid.adapt.base import AdaptMethod
from uda_reid.adapt.registry import METHODS


@METHODS.register("direct", aliases=("direct_transfer", "source_only"))
class DirectTransfer(AdaptMethod):
    """Stage 1 only: its ``build_step`` is the base class's ``None``. Without a source
    (``ADAPT.SOURCE none``) the run only evaluates the start model."""

    uses_source = False

    @classmethod
    def from_config(cls, adapt) -> "DirectTransfer":
        return cls()
