"""Camera-style target training data (ECN's camera invariance).

Contract with the CamStyle generator (``camstyle/generate.py`` writes by :data:`CAMSTYLE_DIR`
and :func:`fake_name`, defined here only): for a target training image ``<stem>.jpg`` taken by
camera ``c`` (1-based, as in the file names), the image rendered in the style of camera ``c'``
is ``<target root>/bounding_box_train_camstyle/<stem>_fake_<c>to<c'>.jpg``. The ECN authors'
released folders use that naming for Market-1501 and DukeMTMC-reID and
``<stem>_fake_<c'>.jpg`` (:func:`released_fake_name`) for MSMT17; a folder is read in whichever
of the two namings it uses (:class:`CamStyleFolder`).

The pipeline checks the folder (:func:`check_camstyle_dir`) and hands a method the styled
images under anonymous names (:mod:`uda_reid.adapt.guard`); each time a target image is drawn,
one camera is chosen uniformly at random (as the original does): its own camera gives the
original image, any other camera the generated one.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from uda_reid.utils.errors import UserError

CAMSTYLE_DIR = "bounding_box_train_camstyle"
Sample = Tuple[str, int, int, int]
# <stem>_fake_<c>to<c'>.jpg (the contract) or <stem>_fake_<c'>.jpg (ECN's released MSMT17)
FAKE_NAME = re.compile(r"(?P<stem>.+)_fake_(?:(?P<camera>\d+)to)?(?P<style>\d+)\.jpg")
NAMINGS = "<stem>_fake_<c>to<c'>.jpg or <stem>_fake_<c'>.jpg"


class CamStyleMissingError(UserError, FileNotFoundError):
    """The camera-style images a run needs are not on disk."""


class CamStyleNameError(UserError, ValueError):
    """A file in the camstyle folder whose name does not follow either naming."""


def fake_name(stem: str, camid: int, style_camid: int) -> str:
    """``<stem>_fake_<c>to<c'>.jpg``: the file name of image ``<stem>`` of camera ``camid``
    rendered in camera ``style_camid`` (both 0-based, written 1-based). The one definition of
    the name, for the generator (``camstyle/generate.py``) and the readers here."""
    return f"{stem}_fake_{camid + 1}to{style_camid + 1}.jpg"


def released_fake_name(stem: str, style_camid: int) -> str:
    """``<stem>_fake_<c'>.jpg``: the naming of ECN's released MSMT17 camera-style images
    (``style_camid`` 0-based, written 1-based)."""
    return f"{stem}_fake_{style_camid + 1}.jpg"


def camstyle_path(camstyle_dir: os.PathLike | str, img_path: str, camid: int,
                  style_camid: int) -> Path:
    """Path of ``img_path`` (camera ``camid``, 0-based) rendered in camera ``style_camid``
    under the contract's naming."""
    return Path(camstyle_dir) / fake_name(Path(img_path).stem, camid, style_camid)


@dataclass(frozen=True)
class CamStyleFolder:
    """A checked camstyle folder and its naming: ``with_source_camera`` for
    ``<stem>_fake_<c>to<c'>.jpg``, else ``<stem>_fake_<c'>.jpg``."""

    path: Path
    with_source_camera: bool = True

    def image(self, img_path: str, camid: int, style_camid: int) -> Path:
        """The file of ``img_path`` (camera ``camid``) in camera ``style_camid`` (0-based)."""
        stem = Path(img_path).stem
        return self.path / (fake_name(stem, camid, style_camid) if self.with_source_camera
                            else released_fake_name(stem, style_camid))

    @property
    def naming(self) -> str:
        return "<stem>_fake_<c>to<c'>.jpg" if self.with_source_camera else \
            "<stem>_fake_<c'>.jpg"


def parse_fake_name(name: str, num_cameras: int, where: os.PathLike | str = ""
                    ) -> Tuple[str, Optional[int], int]:
    """``(stem, source camera or None, style camera)``, cameras 0-based, of a camstyle file
    name in either naming; anything else, or a camera outside ``1..num_cameras``, is a
    :class:`CamStyleNameError` naming the file (``where``: its folder)."""
    path = Path(where) / name
    match = FAKE_NAME.fullmatch(name)
    if match is None:
        raise CamStyleNameError(f"{path}: not a camera-style image name (expected {NAMINGS})")
    cameras = [int(c) for c in (match["camera"], match["style"]) if c is not None]
    bad = [c for c in cameras if not 1 <= c <= num_cameras]
    if bad:
        raise CamStyleNameError(f"{path}: camera {bad[0]} outside 1..{num_cameras}")
    camera = None if match["camera"] is None else int(match["camera"]) - 1
    return match["stem"], camera, int(match["style"]) - 1


def read_naming(folder: Path, samples: Sequence[Sample], num_cameras: int) -> CamStyleFolder:
    """The naming the visible files of ``folder`` use (hidden entries, e.g. the generator's
    ``.manifest``, are skipped; an empty folder counts as the contract's). A file in neither
    naming, with a camera outside the dataset's, a folder that mixes the two, or a
    ``<c>to<c'>`` name whose ``<c>`` is not its training image's camera is a
    :class:`CamStyleNameError` naming the file."""
    cameras: Dict[str, int] = {Path(path).stem: camid for path, _, camid, _ in samples}
    example: Dict[bool, str] = {}
    for name in sorted(n for n in os.listdir(folder) if not n.startswith(".")):
        stem, camera, _ = parse_fake_name(name, num_cameras, folder)
        example.setdefault(camera is not None, name)
        if camera is not None and stem in cameras and camera != cameras[stem]:
            raise CamStyleNameError(f"{folder / name}: names camera {camera + 1} as its source, "
                                    f"but the training image {stem} is from camera "
                                    f"{cameras[stem] + 1}")
    if len(example) == 2:
        raise CamStyleNameError(f"{folder} mixes the two namings ({example[True]} and "
                                f"{example[False]}): keep one of {NAMINGS}")
    return CamStyleFolder(folder, False not in example)


def generation_hint(dataset_name: str, dataset_options: Sequence[str] = ()) -> str:
    """How to produce the camstyle folder: the generator's command lines, with the
    ``dataset_options`` (``KEY VALUE`` pairs that locate the dataset, e.g. ``DATASETS.ROOT``)
    the run was given."""
    options = "".join(f" {shlex.quote(str(o))}" for o in dataset_options)
    return (f"Generate them with\n"
            f"  python tools/camstyle.py train --dataset {dataset_name}{options}\n"
            f"  python tools/camstyle.py generate --dataset {dataset_name}{options}\n"
            "or run without camera invariance with ADAPT.ECN.CAMSTYLE False")


def check_camstyle_dir(root: os.PathLike | str, samples: Sequence[Sample], num_cameras: int,
                       dataset_name: str, dataset_options: Sequence[str] = ()) -> CamStyleFolder:
    """The camstyle folder under ``root`` and its naming (:func:`read_naming`) after checking
    every needed file is there.

    Raises :class:`CamStyleMissingError` naming the folder (or the missing files) and the
    commands that generate them (:func:`generation_hint` with ``dataset_options``).
    """
    path = Path(root) / CAMSTYLE_DIR
    if not path.is_dir():
        raise CamStyleMissingError(
            f"Camera-style images for {dataset_name} not found: {path} does not exist.\n"
            + generation_hint(dataset_name, dataset_options))
    folder = read_naming(path, samples, num_cameras)
    present = set(os.listdir(path))
    needed = [folder.image(img, camid, other).name for img, _, camid, _ in samples
              for other in range(num_cameras) if other != camid]
    missing = [name for name in needed if name not in present]
    if missing:
        raise CamStyleMissingError(
            f"{path} lacks {len(missing)} of the {len(needed)} camera-style images for "
            f"{dataset_name} ({folder.naming}; e.g. {', '.join(missing[:3])}).\n"
            + generation_hint(dataset_name, dataset_options))
    return folder
