"""The synthetic domains, generated on first use and read back by the real parsers."""
from __future__ import annotations

from uda_reid.data.datasets.dukemtmc import DukeMTMC
from uda_reid.data.datasets.market1501 import Market1501
from uda_reid.data.datasets.registry import DATASETS
from uda_reid.data.synthetic.generate import ensure_domain


@DATASETS.register("synth-market")
class SynthMarket(Market1501):
    """Synthetic campus domain, 6 cameras, Market-1501 layout (junk and distractors too)."""

    name = "synth-market"
    synthetic = True

    def __init__(self, root: str = "data", synth_scale: str = "default",
                 synth_seed: int = 0) -> None:
        super().__init__(str(ensure_domain(root, self.name, synth_scale, synth_seed)))


@DATASETS.register("synth-duke")
class SynthDuke(DukeMTMC):
    """Synthetic winter-campus domain, 8 cameras, DukeMTMC-reID layout."""

    name = "synth-duke"
    synthetic = True

    def __init__(self, root: str = "data", synth_scale: str = "default",
                 synth_seed: int = 0) -> None:
        super().__init__(str(ensure_domain(root, self.name, synth_scale, synth_seed)))
