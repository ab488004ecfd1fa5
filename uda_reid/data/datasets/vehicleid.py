"""VehicleID (Liu et al., CVPR 2016, "Deep Relative Distance Learning") in its authors' layout.

``VehicleID_V1.0/image/<name>.jpg`` and ``VehicleID_V1.0/train_test_split/`` with
``train_list.txt`` and ``test_list_{800,1600,2400}.txt`` (the small / medium / large test
sets), one ``<image name> <vehicle id>`` per line. The images carry no camera ids: training
images share camera 0 and every test image is its own camera.

Test protocol (as the dataset's authors define it): for one test size, one image of every
vehicle is drawn at random as the gallery and the other images are the queries; this is
repeated :data:`REPEATS` times with a fixed seed and the metrics are averaged.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from uda_reid.data.datasets.base import (DatasetLayoutError, ReIDDataset, Split, index_samples,
                                          matched_lines, own_camera_per_image, relabel,
                                          require_dir)
from uda_reid.data.datasets.registry import DATASETS

logger = logging.getLogger(__name__)

REPEATS = 10  # random gallery draws per evaluation
SPLIT_SEED = 0  # fixed: every evaluation of a model uses the same draws
LINE = re.compile(r"(\S+)\s+(\d+)")
EXPECTED = "'0004100 1' (<image name without .jpg> <vehicle id>)"


def random_gallery_splits(pids: Sequence[int], repeats: int = REPEATS, seed: int = SPLIT_SEED
                          ) -> List[Split]:
    """``repeats`` draws of one random image per identity as the gallery, the rest as queries.

    ``pids`` (N,) -> [(query indexes, gallery indexes)], both ascending; the draws depend only
    on ``pids`` and ``seed``.
    """
    pids = np.asarray(pids)
    order = np.argsort(pids, kind="stable")
    _, starts, counts = np.unique(pids[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(repeats):
        in_gallery = np.zeros(len(pids), dtype=bool)
        in_gallery[order[starts + rng.integers(0, counts)]] = True
        splits.append((np.flatnonzero(~in_gallery), np.flatnonzero(in_gallery)))
    return splits


class VehicleID(ReIDDataset):
    """VehicleID with the test list of :attr:`test_size` vehicles (see the module docstring).

    ``query`` / ``gallery`` hold the first draw; ``test_splits`` all :data:`REPEATS` draws as
    indexes into ``query + gallery``.
    """

    name = "vehicleid"
    dataset_dir = "VehicleID_V1.0"
    test_size = 800

    def __init__(self, root: str = "data") -> None:
        base = Path(root) / self.dataset_dir
        test_list = f"test_list_{self.test_size}.txt"
        layout = (f"  {base}/\n    image/<name>.jpg\n    train_test_split/train_list.txt  "
                  f"train_test_split/{test_list}\n  with lines like {EXPECTED}")
        require_dir(base, layout)
        split_dir = require_dir(base / "train_test_split", layout)
        image_dir = require_dir(base / "image", layout)
        train = self._read(split_dir / "train_list.txt", image_dir, layout)
        test = self._read(split_dir / test_list, image_dir, layout)
        found = len({pid for _, pid, _ in test})
        if found != self.test_size:
            raise DatasetLayoutError(f"{split_dir / test_list}: {found} vehicles, the "
                                     f"{self.test_size}-vehicle test set was expected")
        test = own_camera_per_image(index_samples(test))
        splits = random_gallery_splits([s[1] for s in test])
        query_idx, gallery_idx = splits[0]
        query, gallery = [test[i] for i in query_idx], [test[i] for i in gallery_idx]
        # the draws as indexes into query + gallery (the order of the test loader)
        position = np.empty(len(test), dtype=np.int64)
        position[np.concatenate([query_idx, gallery_idx])] = np.arange(len(test))
        logger.info("%s: no camera ids (every test image is its own camera); evaluation "
                    "averages %d random gallery draws (seed %d)", self.name, REPEATS, SPLIT_SEED)
        super().__init__(str(base), relabel(index_samples(train)), query, gallery,
                         test_splits=[(position[q], position[g]) for q, g in splits])

    @staticmethod
    def _read(list_file: Path, image_dir: Path, layout: str) -> List[Tuple[str, int, int]]:
        return [(str(image_dir / f"{match.group(1)}.jpg"), int(match.group(2)), 0)
                for _, match in matched_lines(list_file, LINE, EXPECTED, layout)]


@DATASETS.register("vehicleid", aliases=("vehicleid-800", "vehicleid-small"))
class VehicleIDSmall(VehicleID):
    """VehicleID, small test set (800 vehicles)."""


@DATASETS.register("vehicleid-1600", aliases=("vehicleid-medium",))
class VehicleIDMedium(VehicleID):
    """VehicleID, medium test set (1,600 vehicles)."""

    name = "vehicleid-1600"
    test_size = 1600


@DATASETS.register("vehicleid-2400", aliases=("vehicleid-large",))
class VehicleIDLarge(VehicleID):
    """VehicleID, large test set (2,400 vehicles)."""

    name = "vehicleid-2400"
    test_size = 2400
