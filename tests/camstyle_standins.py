"""Stand-in camera-style images for tests: a per-camera colour transform of each image."""
from pathlib import Path
from typing import Callable, Sequence, Tuple

import numpy as np
from PIL import Image

from uda_reid.adapt.camstyle_data import CAMSTYLE_DIR, fake_name


def camera_gain(camid: int) -> np.ndarray:
    """Per-channel gain of camera ``camid`` (0-based): a distinct colour cast per camera."""
    return np.array([0.4 + 0.15 * (camid % 5), 1.0 - 0.1 * (camid % 4), 0.5 + 0.2 * (camid % 3)])


def write_standins(root: Path, samples: Sequence[Tuple[str, int, int, int]],
                   num_cameras: int,
                   name: Callable[[str, int, int], str] = fake_name) -> Path:
    """Write ``<root>/bounding_box_train_camstyle/<name(stem, c, c')>`` for all c' != c
    (default: ``<stem>_fake_<c>to<c'>.jpg``)."""
    folder = Path(root) / CAMSTYLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for path, _, camid, _ in samples:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        for other in range(num_cameras):
            if other != camid:
                styled = np.clip(pixels * camera_gain(other) / camera_gain(camid), 0, 255)
                Image.fromarray(styled.astype(np.uint8)).save(
                    folder / name(Path(path).stem, camid, other), quality=95)
    return folder
