"""DukeMTMC-reID (Zheng et al., ICCV 2017) in its authors' layout."""
from __future__ import annotations

import re

from uda_reid.data.datasets.market1501 import FolderLayoutDataset
from uda_reid.data.datasets.registry import DATASETS


@DATASETS.register("dukemtmc", aliases=("duke", "dukemtmcreid"))
class DukeMTMC(FolderLayoutDataset):
    """``DukeMTMC-reID``: ``0001_c2_f0046182.jpg``, 8 cameras."""

    name = "dukemtmc"
    dataset_dir = "DukeMTMC-reID"
    pattern = re.compile(r"(-?\d+)_c(\d)_f\d+\.jpg")
    expected_name = "0001_c2_f0046182.jpg (<pid>_c<camera>_f<frame>.jpg)"
    max_cameras = 8
