"""Custom data without a class: list files or a file-name pattern named in ``DATASETS.CUSTOM``.

A split is either a list file, one image per line as ``<image path> <pid> [<camid>]``
(whitespace-separated; blank lines and ``#`` comments skipped), or a folder of images whose
file names a regular expression parses (groups ``pid`` and optionally ``camid``; without
named groups, group 1 is the id and group 2 the camera). Ids are integers; negative ids are
junk and skipped. Camera ids may be any integers: they are mapped to ``0..C-1`` in sorted
order. A dataset gives camera ids everywhere or nowhere; without them training images share
camera 0 and every test image is its own camera (see :func:`own_camera_per_image`).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from uda_reid.config.sections.data import CustomDatasetConfig
from uda_reid.data.datasets.base import (DatasetLayoutError, ReIDDataset, index_samples,
                                          own_camera_per_image, relabel)
from uda_reid.data.datasets.registry import DATASETS

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
LIST_LINE = "'<image path> <pid> [<camid>]', e.g. 'cam1/0001_0003.jpg 1 1'"


@dataclass(frozen=True)
class Entry:
    """One parsed image: ``camid`` None when its source gives none; ``where`` names it."""

    path: str
    pid: int
    camid: Optional[int]
    where: str


def read_list_file(list_file: Path, image_root: Optional[Path] = None) -> List[Entry]:
    """Entries of a list file; image paths are relative to ``image_root`` (default: the list
    file's folder). A bad line or a missing image is an error naming the file and line."""
    if not list_file.is_file():
        raise DatasetLayoutError(f"Missing list file {list_file} (expected lines like "
                                 f"{LIST_LINE})")
    base = image_root if image_root is not None else list_file.parent
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"{list_file}:{number}"
        fields = text.split()
        try:
            if len(fields) not in (2, 3):
                raise ValueError(f"{len(fields)} fields")
            pid = int(fields[1])
            camid = int(fields[2]) if len(fields) == 3 else None
        except ValueError as err:
            raise DatasetLayoutError(f"{where}: cannot parse {line.strip()!r} ({err}); expected "
                                     f"{LIST_LINE}") from None
        path = base / fields[0]
        if not path.is_file():
            raise DatasetLayoutError(f"{where}: image {path} does not exist")
        entries.append(Entry(str(path), pid, camid, where))
    return entries


def read_image_folder(folder: Path, pattern: str) -> List[Entry]:
    """Entries of the images of ``folder`` (sorted names) parsed by ``pattern`` (matched
    against the whole file name); an image whose name does not match is an error naming it."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"Missing folder {folder}")
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"DATASETS.CUSTOM.PATTERN {pattern!r} is not a regular expression: "
                         f"{err}") from None
    named = "pid" in regex.groupindex
    if not named and regex.groups < 1:
        raise ValueError(f"DATASETS.CUSTOM.PATTERN {pattern!r} has no group for the id: use "
                         "(?P<pid>...) and optionally (?P<camid>...)")
    has_camera = "camid" in regex.groupindex if named else regex.groups >= 2
    entries = []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        match = regex.fullmatch(name)
        if match is None:
            raise DatasetLayoutError(f"File name {folder / name} does not match "
                                     f"DATASETS.CUSTOM.PATTERN {pattern!r}")
        pid_text = match.group("pid") if named else match.group(1)
        cam_text = (match.group("camid") if named else match.group(2)) if has_camera else None
        try:
            pid = int(pid_text)
            camid = int(cam_text) if cam_text is not None else None
        except (TypeError, ValueError):
            raise DatasetLayoutError(f"{folder / name}: DATASETS.CUSTOM.PATTERN {pattern!r} "
                                     f"gives id {pid_text!r} / camera {cam_text!r}, expected "
                                     "integers") from None
        entries.append(Entry(str(folder / name), pid, camid, str(folder / name)))
    return entries


def read_split(location: Path, pattern: str, image_root: Optional[Path]) -> List[Entry]:
    """A list file (a file) or an image folder (a folder) at ``location``."""
    if location.is_dir():
        return read_image_folder(location, pattern)
    return read_list_file(location, image_root)


def check_cameras(splits: Sequence[Tuple[str, List[Entry]]]) -> bool:
    """Whether the entries carry camera ids; all of them must, or none (else an error naming
    the first entry of each kind)."""
    entries = [e for _, items in splits for e in items]
    with_cam = next((e for e in entries if e.camid is not None), None)
    without = next((e for e in entries if e.camid is None), None)
    if with_cam is not None and without is not None:
        raise DatasetLayoutError(f"Camera ids must be given for every image or for none: "
                                 f"{with_cam.where} has one, {without.where} has none")
    return with_cam is not None


def to_samples(entries: Sequence[Entry], cameras: dict) -> List[Tuple[str, int, int]]:
    """(path, pid, 0-based camera) of the non-junk entries (negative ids skipped)."""
    return [(e.path, e.pid, cameras.get(e.camid, 0)) for e in entries if e.pid >= 0]


@DATASETS.register("custom")
class CustomDataset(ReIDDataset):
    """Train / query / gallery from list files or image folders (see the module docstring)."""

    name = "custom"

    def __init__(self, train: str, query: str, gallery: str, root: str = "data",
                 pattern: str = CustomDatasetConfig.PATTERN, image_root: str = "") -> None:
        base = Path(root)
        images = base / image_root if image_root else None
        splits = []
        for key, value in (("TRAIN", train), ("QUERY", query), ("GALLERY", gallery)):
            if not value:
                raise ValueError(f"DATASETS.CUSTOM.{key} is empty: give a list file or an image "
                                 "folder (relative to DATASETS.ROOT)")
            splits.append((key, read_split(base / value, pattern, images)))
        has_cameras = check_cameras(splits)
        cameras = {c: i for i, c in enumerate(sorted({e.camid for _, items in splits
                                                      for e in items}))} if has_cameras else {}
        junk = sum(e.pid < 0 for _, items in splits for e in items)
        if junk:
            logger.info("custom: %d images with negative (junk) ids skipped", junk)
        train, query, gallery = (to_samples(items, cameras) for _, items in splits)
        train = relabel(index_samples(train))
        query, gallery = index_samples(query), index_samples(gallery)
        if not has_cameras:
            logger.warning("custom: no camera ids given: every query and gallery image counts as "
                           "its own camera, so the evaluation keeps every same-id gallery image "
                           "as a match (no same-camera filtering)")
            test = own_camera_per_image(query + gallery)
            query, gallery = test[:len(query)], test[len(query):]
        super().__init__(str(base), train, query, gallery)
        self.has_cameras = has_cameras

    @classmethod
    def from_config(cls, datasets) -> "CustomDataset":
        """From the ``DATASETS`` section (``ROOT`` and ``CUSTOM.*``)."""
        opts = datasets.CUSTOM
        return cls(opts.TRAIN, opts.QUERY, opts.GALLERY, datasets.ROOT, opts.PATTERN,
                   opts.IMAGE_ROOT)
