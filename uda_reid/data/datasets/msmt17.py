"""MSMT17 v1 (Wei et al., CVPR 2018): images listed in ``list_*.txt`` files."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

from uda_reid.data.datasets.base import (DatasetLayoutError, ReIDDataset, index_samples,
                                          matched_lines, relabel, require_dir)
from uda_reid.data.datasets.registry import DATASETS

LINE = re.compile(r"(\d+)/(\d+)_(\d+)_(\d+)_\w+?_\d+_\d+\.jpg\s+(\d+)")
EXPECTED = "'0000/0000_000_01_0303morning_0015_0.jpg 0' (<pid folder>/<pid>_<n>_<camera>_... <pid>)"


@DATASETS.register("msmt17", aliases=("msmt",))
class MSMT17(ReIDDataset):
    """``MSMT17_V1`` with ``train/``, ``test/`` and ``list_{train,val,query,gallery}.txt``.

    As in FastReID and torchreid, the validation list is added to training (``train+val``).
    """

    name = "msmt17"
    dataset_dir = "MSMT17_V1"

    def __init__(self, root: str = "data") -> None:
        base = Path(root) / self.dataset_dir
        layout = (f"  {base}/\n    train/  test/\n    list_train.txt  list_val.txt  "
                  f"list_query.txt  list_gallery.txt\n  with lines like {EXPECTED}")
        require_dir(base, layout)
        train_dir = require_dir(base / "train", layout)
        test_dir = require_dir(base / "test", layout)
        train = relabel(index_samples(self._read(base / "list_train.txt", train_dir, layout)
                                      + self._read(base / "list_val.txt", train_dir, layout)))
        query = index_samples(self._read(base / "list_query.txt", test_dir, layout))
        gallery = index_samples(self._read(base / "list_gallery.txt", test_dir, layout))
        super().__init__(str(base), train, query, gallery)

    @staticmethod
    def _read(list_file: Path, image_dir: Path, layout: str) -> List[Tuple[str, int, int]]:
        out = []
        for number, match in matched_lines(list_file, LINE, EXPECTED, layout):
            rel = match.string.split()[0]
            pid, cam = int(match.group(5)), int(match.group(4))
            if cam < 1:
                raise DatasetLayoutError(f"{list_file}:{number}: camera {cam} must be >= 1")
            out.append((str(image_dir / rel), pid, cam - 1))
        return out
