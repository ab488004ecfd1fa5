"""Training images under anonymous names, loaded by position.

:func:`link_anonymously` gives each image file a new name ``<folder>/<name><suffix>`` (a hard
link, or a copy where the folder lies on another file system), so that a list of these files
says nothing about the people, cameras or dataset folders of the originals.
:class:`IndexedImages` reads them by position; its items carry the image, its camera, its
position and, for a labelled set, its identity - never a file path.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from uda_reid.data.loaders import read_image
from uda_reid.utils.distributed import on_main_process

logger = logging.getLogger(__name__)

UNLABELED = -1


def link_anonymously(files: Sequence[str], folder: Path, names: Sequence[str]) -> Tuple[str, ...]:
    """``files[i]`` as ``folder/names[i]`` + its suffix; returns the new paths.

    The folder is emptied first (a killed run's leftovers). Hard links cost no space; across
    file systems the files are copied. Under torch.distributed rank 0 writes the folder and
    every rank waits for it.
    """
    if len(files) != len(names):
        raise ValueError(f"{len(files)} files for {len(names)} names")
    out = tuple(str(folder / f"{name}{Path(src).suffix}") for src, name in zip(files, names))
    on_main_process(lambda: _link_all(files, out, folder))
    return out


def _link_all(files: Sequence[str], links: Sequence[str], folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    copied = 0
    for src, dst in zip(files, links):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
            copied += 1
    if copied:
        logger.info("%d of %d images copied to %s (no hard link possible)", copied, len(links),
                    folder)


class IndexedImages(Dataset):
    """Items ``{"images", "pids", "camids", "indexes"}`` of anonymously named images.

    files: (N,) image files; camids: (N,) cameras (0-based); pids: (N,) identities, or ``None``
    for an unlabelled set (every item's ``pids`` is then -1). styles: optional (N, C) files of
    image ``i`` in the style of camera ``c`` (its own camera: the image itself); each draw of
    ``i`` then picks a camera uniformly at random and ``camids`` is that camera.
    """

    def __init__(self, files: Sequence[str], camids: Sequence[int],
                 pids: Optional[Sequence[int]] = None,
                 transform: Optional[Callable] = None,
                 styles: Optional[Sequence[Sequence[str]]] = None,
                 loader: Callable = read_image) -> None:
        if len(camids) != len(files) or (pids is not None and len(pids) != len(files)):
            raise ValueError(f"{len(files)} files, {len(camids)} camera ids and "
                             f"{'no' if pids is None else len(pids)} identities")
        if styles is not None and len(styles) != len(files):
            raise ValueError(f"{len(styles)} camera-style rows for {len(files)} images")
        self.files = tuple(files)
        self.camids = tuple(int(c) for c in camids)
        self.pids = None if pids is None else tuple(int(p) for p in pids)
        self.transform = transform
        self.styles = None if styles is None else tuple(tuple(row) for row in styles)
        self.loader = loader

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Dict[str, object]:
        camid, path = self.camids[i], self.files[i]
        if self.styles is not None:
            camid = int(torch.randint(len(self.styles[i]), (1,)))
            path = self.styles[i][camid]
        img = self.loader(path)
        return {"images": self.transform(img) if self.transform else img,
                "pids": UNLABELED if self.pids is None else self.pids[i],
                "camids": camid, "indexes": i}
