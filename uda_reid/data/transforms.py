"""Image transforms for training and testing, built from plain arguments or the config."""
from __future__ import annotations

from typing import Sequence, Tuple

import torchvision.transforms as T


def build_transforms(size: Tuple[int, int], is_train: bool, flip_prob: float = 0.5,
                     padding: int = 10, erasing_prob: float = 0.0, autoaug_prob: float = 0.0,
                     mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225)) -> T.Compose:
    """PIL image -> normalised (3, H, W) tensor.

    Training: resize to ``size`` (H, W), AutoAugment (ImageNet policy) with ``autoaug_prob``,
    horizontal flip with ``flip_prob``, zero-pad by ``padding`` and random-crop back, normalise,
    random erasing with ``erasing_prob`` (filled with the mean, as BoT does). Testing: resize
    and normalise only. Zero probabilities/padding switch a step off.
    """
    ops = [T.Resize(tuple(size), interpolation=T.InterpolationMode.BICUBIC)]
    if is_train:
        if autoaug_prob > 0:
            ops.append(T.RandomApply([T.AutoAugment(T.AutoAugmentPolicy.IMAGENET)],
                                     p=autoaug_prob))
        if flip_prob > 0:
            ops.append(T.RandomHorizontalFlip(flip_prob))
        if padding > 0:
            ops += [T.Pad(padding), T.RandomCrop(tuple(size))]
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if is_train and erasing_prob > 0:
        ops.append(T.RandomErasing(p=erasing_prob, value=0))
    return T.Compose(ops)


def build_transforms_from_config(cfg, is_train: bool) -> T.Compose:
    """:func:`build_transforms` from the ``INPUT`` section."""
    inp = cfg.INPUT
    return build_transforms(
        inp.SIZE_TRAIN if is_train else inp.SIZE_TEST, is_train,
        flip_prob=inp.FLIP.PROB if inp.FLIP.ENABLED else 0.0,
        padding=inp.PADDING.SIZE if inp.PADDING.ENABLED else 0,
        erasing_prob=inp.REA.PROB if inp.REA.ENABLED else 0.0,
        autoaug_prob=inp.AUTOAUG.PROB if inp.AUTOAUG.ENABLED else 0.0,
        mean=inp.PIXEL_MEAN, std=inp.PIXEL_STD)
