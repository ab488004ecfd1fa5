"""Images for the GAN: (path, camid) lists, loading to [-1, 1] tensors and back."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

CameraSample = Tuple[str, int]  # (image path, 0-based camera id)


def camera_samples(samples: Sequence[tuple]) -> List[CameraSample]:
    """(path, camid) pairs from dataset samples ``(img_path, pid, camid, index)``."""
    return [(str(s[0]), int(s[2])) for s in samples]


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB; a clear error naming the file if it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise OSError(f"Cannot read image {path}: {err}") from err


def is_readable_image(path: str | Path) -> bool:
    """True when the file decodes completely (a truncated JPEG does not)."""
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def to_tensor(img: Image.Image, size: Tuple[int, int]) -> torch.Tensor:
    """PIL image -> (3, H, W) float in [-1, 1] at ``size`` = (H, W) (bicubic resize)."""
    height, width = size
    if img.size != (width, height):
        img = img.resize((width, height), Image.BICUBIC)
    array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_image(tensor: torch.Tensor, size: Tuple[int, int] | None = None) -> Image.Image:
    """(3, H, W) tensor in [-1, 1] -> PIL image, resized to ``size`` = (W, H) if given."""
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    img = Image.fromarray(array.permute(1, 2, 0).cpu().numpy())
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BICUBIC)
    return img


class CameraImageDataset(Dataset):
    """Training images with their cameras: item -> ``{"images": (3, H, W) in [-1, 1],
    "camids": camid}`` (batched by the default collate)."""

    def __init__(self, samples: Sequence[CameraSample], image_size: Tuple[int, int],
                 flip: bool = True) -> None:
        if not samples:
            raise ValueError("CameraImageDataset: no training images")
        self.samples = list(samples)
        self.image_size = tuple(image_size)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path, camid = self.samples[index]
        image = to_tensor(load_rgb(path), self.image_size)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"images": image, "camids": camid}
