"""VeRi-776 (Liu et al., ICME 2016 / ECCV 2016) vehicle re-identification, authors' layout."""
from __future__ import annotations

import re
from pathlib import Path

from uda_reid.data.datasets.base import (ReIDDataset, index_samples, parse_image_folder, relabel,
                                          require_dir)
from uda_reid.data.datasets.registry import DATASETS


@DATASETS.register("veri776", aliases=("veri",))
class VeRi776(ReIDDataset):
    """``VeRi/`` with ``image_train/``, ``image_query/``, ``image_test/``; file names
    ``0001_c001_00016450_0.jpg`` (vehicle id, camera 1..20, frame, index); 776 vehicles."""

    name = "veri776"
    pattern = re.compile(r"(\d+)_c(\d{3})_\d+_\d+\.jpg")
    expected_name = "0001_c001_00016450_0.jpg (<vehicle id>_c<camera>_<frame>_<n>.jpg)"

    def __init__(self, root: str = "data") -> None:
        base = Path(root) / "VeRi"
        layout = (f"  {base}/\n    image_train/  image_query/  image_test/\n"
                  f"  with file names like {self.expected_name}")
        require_dir(base, layout)

        def parse(sub: str):
            return parse_image_folder(require_dir(base / sub, layout), self.pattern,
                                      self.expected_name, keep_distractors=True, num_cameras=20)

        super().__init__(str(base), relabel(index_samples(parse("image_train"))),
                         index_samples(parse("image_query")), index_samples(parse("image_test")))
