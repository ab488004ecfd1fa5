"""Image transforms for training and testing, built from plain arguments or the INPUT section."""
from __future__ import annotations

from typing import Sequence, Tuple

import torchvision.transforms as T

from uda_reid.config.sections.data import FlipConfig, InputConfig, PaddingConfig


def build_transforms(size: Tuple[int, int], is_train: bool,
                     flip_prob: float = FlipConfig.PROB, padding: int = PaddingConfig.SIZE,
                     erasing_prob: float = 0.0, autoaug_prob: float = 0.0,
                     mean: Sequence[float] = InputConfig.PIXEL_MEAN,
                     std: Sequence[float] = InputConfig.PIXEL_STD) -> T.Compose:
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


def build_transforms_from_input(inp: InputConfig, is_train: bool) -> T.Compose:
    """:func:`build_transforms` from the ``INPUT`` section."""
    return build_transforms(
        inp.SIZE_TRAIN if is_train else inp.SIZE_TEST, is_train,
        flip_prob=inp.FLIP.PROB if inp.FLIP.ENABLED else 0.0,
        padding=inp.PADDING.SIZE if inp.PADDING.ENABLED else 0,
        erasing_prob=inp.REA.PROB if inp.REA.ENABLED else 0.0,
        autoaug_prob=inp.AUTOAUG.PROB if inp.AUTOAUG.ENABLED else 0.0,
        mean=inp.PIXEL_MEAN, std=inp.PIXEL_STD)


def build_transforms_from_config(cfg, is_train: bool) -> T.Compose:
    """Entry point for the run flows: :func:`build_transforms_from_input` of ``cfg.INPUT``."""
    return build_transforms_from_input(cfg.INPUT, is_train)
