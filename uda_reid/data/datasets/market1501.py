"""Market-1501 (Zheng et al., ICCV 2015) in its authors' layout."""
from __future__ import annotations

import re
from pathlib import Path

from uda_reid.data.datasets.base import (ReIDDataset, index_samples, parse_image_folder, relabel,
                                          require_dir)
from uda_reid.data.datasets.registry import DATASETS


class FolderLayoutDataset(ReIDDataset):
    """Datasets shipped as ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` folders
    of JPEGs whose names start with ``<pid>_c<camera>``."""

    dataset_dir = ""
    pattern = re.compile(r"")
    expected_name = ""
    max_cameras = 0

    def __init__(self, root: str = "data") -> None:
        base = Path(root) / self.dataset_dir
        layout = (f"  {base}/\n    bounding_box_train/  query/  bounding_box_test/\n"
                  f"  with file names like {self.expected_name}")
        require_dir(base, layout)
        folders = {split: require_dir(base / sub, layout) for split, sub in
                   (("train", "bounding_box_train"), ("query", "query"),
                    ("gallery", "bounding_box_test"))}

        def parse(split: str, keep_distractors: bool):
            return parse_image_folder(folders[split], self.pattern, self.expected_name,
                                      keep_distractors, self.max_cameras)

        train = relabel(index_samples(parse("train", False)))
        query = index_samples(parse("query", False))
        gallery = index_samples(parse("gallery", True))
        super().__init__(str(base), train, query, gallery)


@DATASETS.register("market1501", aliases=("market",))
class Market1501(FolderLayoutDataset):
    """``Market-1501-v15.09.15``: ``0002_c1s1_000451_03.jpg``; ``-1`` junk ignored, ``0000``
    distractors kept in the gallery."""

    name = "market1501"
    dataset_dir = "Market-1501-v15.09.15"
    pattern = re.compile(r"(-?\d+)_c(\d)s\d+_\d+_\d+\.jpg")
    expected_name = "0002_c1s1_000451_03.jpg (<pid>_c<camera>s<sequence>_<frame>_<box>.jpg)"
    max_cameras = 6
