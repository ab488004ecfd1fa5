"""The synthetic domains, generated on first use and read back by the real parsers."""
from __future__ import annotations

from uda_reid.data.datasets.dukemtmc import DukeMTMC
from uda_reid.data.datasets.market1501 import Market1501
from uda_reid.data.datasets.msmt17 import MSMT17
from uda_reid.data.datasets.registry import DATASETS
from uda_reid.data.synthetic.generate import ensure_domain


class GeneratedDomain:
    """Mixin of a synthetic dataset: generates its domain (``name``) under ``root`` at
    ``synth_scale``/``synth_seed``/``synth_version`` and parses it with the real dataset class
    it precedes in the bases."""

    name = "synthetic"
    synthetic = True

    def __init__(self, root: str = "data", synth_scale: str = "default", synth_seed: int = 0,
                 synth_version: int = 1) -> None:
        folder = ensure_domain(root, self.name, synth_scale, synth_seed, synth_version)
        super().__init__(str(folder))  # type: ignore[call-arg]


@DATASETS.register("synth-market")
class SynthMarket(GeneratedDomain, Market1501):
    """Synthetic campus domain, 6 cameras, Market-1501 layout (junk and distractors too)."""

    name = "synth-market"


@DATASETS.register("synth-duke")
class SynthDuke(GeneratedDomain, DukeMTMC):
    """Synthetic winter-campus domain, 8 cameras, DukeMTMC-reID layout."""

    name = "synth-duke"


@DATASETS.register("synth-msmt")
class SynthMSMT(GeneratedDomain, MSMT17):
    """Synthetic large-campus domain, 15 cameras with version-2 effects and a time of day per
    image, 1.6x the identities of the others, MSMT17_V1 layout (list files)."""

    name = "synth-msmt"
