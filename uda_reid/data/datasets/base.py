"""Dataset base: samples, layout errors, relabelling and the summary table."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from uda_reid.utils.errors import UserError

Sample = Tuple[str, int, int, int]  # (image path, person id, camera id (0-based), index)
# (query indexes, gallery indexes) into ``query + gallery``: one evaluation of a test protocol
Split = Tuple[Union[slice, np.ndarray], Union[slice, np.ndarray]]

SYNTHETIC_HINT = ("No real dataset is needed to try uda-reid: the synthetic domains "
                  "'synth-market', 'synth-duke' and 'synth-msmt' generate themselves under "
                  "DATASETS.ROOT.")


class DatasetLayoutError(UserError, FileNotFoundError):
    """A dataset folder, list file or file name does not match the expected layout."""


class ReIDDataset:
    """A parsed ReID dataset: ``train``, ``query`` and ``gallery`` lists of :data:`Sample`.

    Train ids are relabelled to ``0..P-1``; query/gallery keep the original ids (distractors
    ``0``). Camera ids are 0-based (file names are 1-based). ``test_splits``: a protocol that
    evaluates several (query, gallery) draws of the test images and averages them (indexes
    into ``query + gallery``); None evaluates ``query`` against ``gallery`` once.
    """

    name = "reid"
    synthetic = False

    def __init__(self, root: str, train: List[Sample], query: List[Sample],
                 gallery: List[Sample], test_splits: Optional[List[Split]] = None) -> None:
        self.root = str(root)
        self.train, self.query, self.gallery = train, query, gallery
        self.test_splits = test_splits
        for split, items in (("train", train), ("query", query), ("gallery", gallery)):
            if not items:
                raise DatasetLayoutError(f"{self.name}: the {split} split under {self.root} is "
                                         f"empty. {SYNTHETIC_HINT}")

    @property
    def num_train_pids(self) -> int:
        return len({s[1] for s in self.train})

    @property
    def num_cameras(self) -> int:
        return len({s[2] for s in self.train + self.query + self.gallery})

    def summary(self) -> str:
        """A one-table summary of ids, images and cameras per split (FastReID style)."""
        rows = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        lines = [f"=> {self.name} ({self.root})",
                 f"  {'subset':<8} | {'# ids':>6} | {'# images':>8} | {'# cameras':>9}",
                 "  " + "-" * 41]
        for split, items in rows:
            ids = len({s[1] for s in items})
            cams = len({s[2] for s in items})
            lines.append(f"  {split:<8} | {ids:>6} | {len(items):>8} | {cams:>9}")
        return "\n".join(lines)


def evaluation_splits(dataset: ReIDDataset) -> List[Split]:
    """The (query, gallery) index splits of ``query + gallery`` that ``dataset`` is evaluated
    on: its ``test_splits``, else the one split query x gallery (as slices: no copies)."""
    if dataset.test_splits:
        return dataset.test_splits
    num_query = len(dataset.query)
    return [(slice(0, num_query), slice(num_query, num_query + len(dataset.gallery)))]


def own_camera_per_image(samples: Sequence[Sample]) -> List[Sample]:
    """For test images without camera ids: every distinct image path gets its own camera id
    (0, 1, ... in path order), so the same-camera filter of the Market-1501 protocol drops no
    true match; only an image listed in both query and gallery meets itself and is dropped."""
    cameras = {path: i for i, path in enumerate(sorted({s[0] for s in samples}))}
    return [(path, pid, cameras[path], index) for path, pid, _, index in samples]


def matched_lines(list_file: Path, pattern: "re.Pattern[str]", expected: str, layout: str
                  ) -> Iterator[Tuple[int, "re.Match[str]"]]:
    """(line number, match) of every non-blank line of ``list_file`` that ``pattern`` matches
    in full (stripped); a missing file or a line that does not match is an error naming it."""
    if not list_file.is_file():
        raise DatasetLayoutError(f"Missing list file {list_file}. Expected layout:\n{layout}\n"
                                 f"{SYNTHETIC_HINT}")
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = pattern.fullmatch(line.strip())
        if match is None:
            raise DatasetLayoutError(f"{list_file}:{number}: cannot parse {line!r}; "
                                     f"expected {expected}")
        yield number, match


def require_dir(path: Path, layout: str) -> Path:
    """``path`` if it is a folder, else a :class:`DatasetLayoutError` describing ``layout``."""
    if not path.is_dir():
        raise DatasetLayoutError(f"Missing folder {path}. Expected layout:\n{layout}\n"
                                 f"{SYNTHETIC_HINT}")
    return path


def relabel(samples: Sequence[Sample]) -> List[Sample]:
    """Map person ids to ``0..P-1`` (sorted order) and re-index samples."""
    mapping = {pid: i for i, pid in enumerate(sorted({s[1] for s in samples}))}
    return [(path, mapping[pid], cam, i) for i, (path, pid, cam, _) in enumerate(samples)]


def with_pids(samples: Sequence[Sample], pids: Sequence[int]) -> List[Sample]:
    """``samples`` with their person ids replaced by ``pids`` (pseudo-labels, or ``-1`` to
    hide the true ids from an adaptation method); paths, cameras and indexes kept."""
    if len(pids) != len(samples):
        raise ValueError(f"{len(pids)} ids for {len(samples)} samples")
    return [(path, int(pid), cam, index) for (path, _, cam, index), pid in zip(samples, pids)]


def index_samples(samples: Iterable[Tuple[str, int, int]]) -> List[Sample]:
    return [(path, pid, cam, i) for i, (path, pid, cam) in enumerate(samples)]


def parse_image_folder(folder: Path, pattern: "re.Pattern[str]", expected: str,
                       keep_distractors: bool, num_cameras: Optional[int] = None
                       ) -> List[Tuple[str, int, int]]:
    """Parse every ``*.jpg`` of ``folder`` whose name ``pattern`` matches as (pid, camera).

    ``-1`` junk is dropped; ``0`` distractors are kept only if ``keep_distractors``. A ``.jpg``
    whose name does not match, or a camera outside ``1..num_cameras``, is an error naming it.
    """
    out = []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(".jpg"):
            continue
        match = pattern.fullmatch(name)
        if match is None:
            raise DatasetLayoutError(f"Unexpected file name {folder / name}: expected {expected}")
        pid, cam = int(match.group(1)), int(match.group(2))
        if num_cameras is not None and not 1 <= cam <= num_cameras:
            raise DatasetLayoutError(f"Camera {cam} out of range 1..{num_cameras} in "
                                     f"{folder / name}")
        if pid == -1 or (pid == 0 and not keep_distractors):
            continue
        out.append((str(folder / name), pid, cam - 1))
    return out
