"""Camera-style target training data (ECN's camera invariance).

Contract with the CamStyle generator (``camstyle/generate.py`` writes by :data:`CAMSTYLE_DIR`
and :func:`fake_name`, defined here only): for a target training image ``<stem>.jpg`` taken by
camera ``c`` (1-based, as in the file names), the image rendered in the style of camera ``c'``
is ``<target root>/bounding_box_train_camstyle/<stem>_fake_<c>to<c'>.jpg``.

The pipeline checks the folder (:func:`check_camstyle_dir`) and hands a method the styled
images under anonymous names (:mod:`uda_reid.adapt.guard`); each time a target image is drawn,
one camera is chosen uniformly at random (as the original does): its own camera gives the
original image, any other camera the generated one.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Sequence, Tuple

from uda_reid.utils.errors import UserError

CAMSTYLE_DIR = "bounding_box_train_camstyle"
Sample = Tuple[str, int, int, int]


class CamStyleMissingError(UserError, FileNotFoundError):
    """The camera-style images a run needs are not on disk."""


def fake_name(stem: str, camid: int, style_camid: int) -> str:
    """``<stem>_fake_<c>to<c'>.jpg``: the file name of image ``<stem>`` of camera ``camid``
    rendered in camera ``style_camid`` (both 0-based, written 1-based). The one definition of
    the name, for the generator (``camstyle/generate.py``) and the readers here."""
    return f"{stem}_fake_{camid + 1}to{style_camid + 1}.jpg"


def camstyle_path(camstyle_dir: os.PathLike | str, img_path: str, camid: int,
                  style_camid: int) -> Path:
    """Path of ``img_path`` (camera ``camid``, 0-based) rendered in camera ``style_camid``."""
    return Path(camstyle_dir) / fake_name(Path(img_path).stem, camid, style_camid)


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
                       dataset_name: str, dataset_options: Sequence[str] = ()) -> Path:
    """The camstyle folder under ``root`` after checking every needed file is there.

    Raises :class:`CamStyleMissingError` naming the folder (or the missing files) and the
    commands that generate them (:func:`generation_hint` with ``dataset_options``).
    """
    folder = Path(root) / CAMSTYLE_DIR
    if not folder.is_dir():
        raise CamStyleMissingError(
            f"Camera-style images for {dataset_name} not found: {folder} does not exist.\n"
            + generation_hint(dataset_name, dataset_options))
    present = set(os.listdir(folder))
    missing = [camstyle_path(folder, path, camid, other).name
               for path, _, camid, _ in samples for other in range(num_cameras)
               if other != camid and camstyle_path(folder, path, camid, other).name not in present]
    if missing:
        raise CamStyleMissingError(
            f"{folder} lacks {len(missing)} of the {len(samples) * (num_cameras - 1)} "
            f"camera-style images for {dataset_name} (e.g. {', '.join(missing[:3])}).\n"
            + generation_hint(dataset_name, dataset_options))
    return folder

