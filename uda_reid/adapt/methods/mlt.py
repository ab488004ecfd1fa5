"""Multi-granularity pseudo-labels (FastReID's cross-domain MLT recipe, FastReID paper 3.2):
every granularity of ADAPT.CLUSTER gets its own classifier (re-initialised from its cluster
centroids each round) and label-smoothed CE; the PK sampler and the hard triplet use the
granularity at ``ADAPT.PSEUDO_LABEL.TRIPLET_GRANULARITY``; ``ADAPT.PSEUDO_LABEL.MIXTURE`` mixes
source batches in.
With one granularity it is exactly ``cluster``."""
from __future__ import annotations

from uda_reid.adapt.methods.cluster import ClusterAdaptation
from uda_reid.adapt.registry import METHODS


@METHODS.register("mlt", aliases=("multi_granularity",))
class MLT(ClusterAdaptation):
    """:class:`ClusterAdaptation` over all the labeler's granularities."""

    single_granularity = False
