"""How far a global colour shift goes as a camera transfer (a baseline for camera styles).

The camera classifier of :mod:`camstyle.evaluate` is trained on a dataset's training images;
held-out images are then shifted by the difference of two cameras' mean colours (the target
camera's minus their own) into every other camera. The share the classifier assigns to the
target camera is the colour-shift rate: high when a camera is little more than a colour cast
(a generator that learns a colour offset is already "transferring"), low when cameras differ
in ways a shift cannot reach (illumination fields, viewpoint, sensor patterns, occluders).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from camstyle.data import load_rgb
from camstyle.evaluate import Sample, image_tensor, run_batched, spread, train_classifier


def camera_mean_colours(images: Sequence[np.ndarray], cameras: Sequence[int],
                        num_cameras: int) -> np.ndarray:
    """(num_cameras, 3) mean RGB over all pixels of each camera's (H, W, 3) images."""
    sums = np.zeros((num_cameras, 3))
    pixels = np.zeros(num_cameras)
    for image, cam in zip(images, cameras):
        sums[cam] += image.reshape(-1, 3).sum(0)
        pixels[cam] += image.shape[0] * image.shape[1]
    if (pixels == 0).any():
        missing = [c for c in range(num_cameras) if pixels[c] == 0]
        raise ValueError(f"no training image of camera(s) {missing}")
    return sums / pixels[:, None]


def shift_colours(image: np.ndarray, means: np.ndarray, source: int, target: int) -> np.ndarray:
    """(H, W, 3) uint8 ``image`` of camera ``source`` plus ``means[target] - means[source]``,
    rounded and clipped to uint8."""
    shifted = image.astype(np.float64) + (means[target] - means[source])
    return np.rint(shifted).clip(0, 255).astype(np.uint8)


def colour_shift_rate(train: Sequence[Sample], probes: Sequence[Sample], num_cameras: int, *,
                      classifier_size: Tuple[int, int] = (64, 32), epochs: int = 10,
                      max_probes: int = 300, seed: int = 0) -> Dict[str, Any]:
    """The colour-shift check (module docstring) as a dict: ``target_camera_rate`` (shifted
    images the classifier puts in their target camera), ``source_camera_rate`` (those it
    leaves in their own), the classifier's accuracy on the unshifted probes, chance and
    per-target rates. ``probes``: held-out images (at most ``max_probes``, spread over the
    list), each shifted into every camera but its own."""
    start = time.perf_counter()
    arrays = [np.asarray(load_rgb(s[0])) for s in train]
    cameras = [s[2] for s in train]
    model = train_classifier(image_tensor([Image.fromarray(a) for a in arrays], classifier_size),
                             torch.tensor(cameras), num_cameras, epochs=epochs, seed=seed)
    means = camera_mean_colours(arrays, cameras, num_cameras)
    probes = spread(probes, max_probes)
    probe_arrays = [np.asarray(load_rgb(s[0])) for s in probes]
    probe_cams = torch.tensor([s[2] for s in probes])
    real = run_batched(model, image_tensor([Image.fromarray(a) for a in probe_arrays],
                                           classifier_size)).argmax(1)
    shifted: List[Image.Image] = []
    sources, targets = [], []
    for image, sample in zip(probe_arrays, probes):
        for target in range(num_cameras):
            if target != sample[2]:
                shifted.append(Image.fromarray(shift_colours(image, means, sample[2], target)))
                sources.append(sample[2])
                targets.append(target)
    predicted = run_batched(model, image_tensor(shifted, classifier_size)).argmax(1)
    target_t, source_t = torch.tensor(targets), torch.tensor(sources)
    return {
        "num_cameras": num_cameras, "chance_camera": 1.0 / num_cameras,
        "train_images": len(train), "probes": len(probes), "shifted_images": len(shifted),
        "classifier": {"epochs": epochs, "input_size": list(classifier_size), "seed": seed,
                       "probe_accuracy": (real == probe_cams).float().mean().item()},
        "target_camera_rate": (predicted == target_t).float().mean().item(),
        "source_camera_rate": (predicted == source_t).float().mean().item(),
        "per_target_camera_rate": {str(c + 1): (predicted[target_t == c] == c).float().mean()
                                   .item() for c in range(num_cameras) if (target_t == c).any()},
        "camera_mean_colours": np.round(means, 2).tolist(),
        "seconds": time.perf_counter() - start,
    }
