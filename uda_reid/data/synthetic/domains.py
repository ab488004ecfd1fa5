"""Synthetic domain specifications: identity attribute distributions and camera styles.

Two domains differ in (a) how identities dress (palettes, patterns, bags, body shape) and
(b) how their cameras render (colour cast, gamma, blur, noise, background, resolution), so a
model trained on one loses accuracy on the other while the figures stay of the same kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np


@dataclass(frozen=True)
class AttributeDistribution:
    """How a domain's identities dress; colours are drawn in HSV."""

    hue_centres: Tuple[float, ...]  # preferred clothing hues in [0, 1)
    hue_spread: float  # std of hue around a centre
    saturation: Tuple[float, float]  # uniform range
    value: Tuple[float, float]  # uniform range (brightness)
    pattern_probs: Tuple[float, float, float, float]  # none, h-stripes, v-stripes, checks
    bag_probs: Tuple[float, float, float]  # none, backpack, handbag
    long_sleeve_prob: float
    width_range: Tuple[float, float]  # torso width, fraction of the image width
    skirt_prob: float


@dataclass(frozen=True)
class CameraStyle:
    """How one camera renders a scene."""

    cast: Tuple[float, float, float]  # per-channel gain
    gamma: float
    blur: float  # Gaussian sigma in pixels at 128x64
    noise: float  # std of additive noise, [0, 255] scale
    background: Tuple[int, int, int]  # base RGB of the scene
    texture: float  # background texture strength
    resolution: float  # render scale before resizing back (1 = full)
    brightness: float


@dataclass(frozen=True)
class DomainSpec:
    name: str
    layout: str  # "market1501" | "dukemtmc"
    attributes: AttributeDistribution
    cameras: Tuple[CameraStyle, ...]

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)


@dataclass(frozen=True)
class ScaleSpec:
    """How many identities/images a generated domain has, and the image size."""

    train_ids: int
    test_ids: int
    cameras_per_id: Tuple[int, int]  # inclusive range of cameras an identity visits
    images_per_camera: Tuple[int, int]  # inclusive range of images per (identity, camera)
    distractors: int  # gallery images of id 0 (Market layout only)
    junk: int  # gallery images of id -1 (Market layout only)
    height: int
    width: int


SCALES: Dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(train_ids=16, test_ids=16, cameras_per_id=(2, 3), images_per_camera=(2, 3),
                      distractors=6, junk=4, height=64, width=32),
    "default": ScaleSpec(train_ids=250, test_ids=250, cameras_per_id=(2, 4),
                         images_per_camera=(2, 3), distractors=120, junk=60, height=128,
                         width=64),
}


def _market_cameras() -> Tuple[CameraStyle, ...]:
    """Six daylight cameras of a campus: mild casts, clean images."""
    return (
        CameraStyle((1.05, 1.00, 0.95), 1.00, 0.4, 4.0, (150, 150, 140), 0.10, 1.0, 1.00),
        CameraStyle((0.95, 1.00, 1.05), 0.95, 0.6, 5.0, (120, 135, 120), 0.15, 1.0, 1.05),
        CameraStyle((1.10, 1.05, 0.90), 1.05, 0.5, 4.0, (170, 160, 140), 0.10, 0.9, 1.00),
        CameraStyle((1.00, 1.00, 1.00), 0.90, 0.8, 6.0, (110, 110, 115), 0.20, 0.8, 0.95),
        CameraStyle((0.92, 1.02, 1.08), 1.10, 0.5, 5.0, (140, 150, 160), 0.12, 1.0, 1.05),
        CameraStyle((1.08, 0.98, 0.98), 1.00, 0.7, 5.0, (160, 140, 130), 0.15, 0.9, 1.00),
    )


def _duke_cameras() -> Tuple[CameraStyle, ...]:
    """Eight winter-campus cameras: stronger casts, darker, blurrier, noisier, lower resolution."""
    return (
        CameraStyle((0.90, 0.97, 1.12), 1.12, 0.8, 6.0, (95, 105, 120), 0.20, 0.8, 0.90),
        CameraStyle((1.12, 1.00, 0.88), 1.10, 0.9, 7.0, (120, 105, 90), 0.25, 0.75, 0.92),
        CameraStyle((0.94, 1.10, 0.94), 1.15, 0.7, 6.0, (90, 115, 95), 0.20, 0.8, 0.88),
        CameraStyle((1.00, 0.93, 1.10), 1.08, 1.0, 8.0, (105, 95, 115), 0.30, 0.7, 0.90),
        CameraStyle((1.10, 1.06, 0.90), 1.18, 0.8, 6.0, (125, 120, 100), 0.20, 0.8, 0.85),
        CameraStyle((0.88, 0.95, 1.08), 1.12, 0.9, 7.0, (80, 90, 105), 0.25, 0.75, 0.88),
        CameraStyle((1.04, 0.97, 1.04), 1.20, 1.0, 8.0, (100, 100, 100), 0.30, 0.7, 0.85),
        CameraStyle((0.97, 1.04, 1.00), 1.12, 0.7, 6.0, (110, 115, 105), 0.20, 0.8, 0.90),
    )


DOMAINS: Dict[str, DomainSpec] = {
    "synth-market": DomainSpec(
        name="synth-market", layout="market1501",
        attributes=AttributeDistribution(
            hue_centres=(0.0, 0.08, 0.16, 0.33, 0.5, 0.6, 0.75, 0.9), hue_spread=0.04,
            saturation=(0.45, 0.95), value=(0.45, 0.95),
            pattern_probs=(0.55, 0.2, 0.1, 0.15), bag_probs=(0.6, 0.25, 0.15),
            long_sleeve_prob=0.3, width_range=(0.34, 0.5), skirt_prob=0.15),
        cameras=_market_cameras()),
    "synth-duke": DomainSpec(
        name="synth-duke", layout="dukemtmc",
        attributes=AttributeDistribution(
            hue_centres=(0.04, 0.12, 0.3, 0.58, 0.66, 0.95), hue_spread=0.05,
            saturation=(0.25, 0.8), value=(0.3, 0.85),
            pattern_probs=(0.35, 0.15, 0.3, 0.2), bag_probs=(0.35, 0.45, 0.2),
            long_sleeve_prob=0.85, width_range=(0.40, 0.58), skirt_prob=0.05),
        cameras=_duke_cameras()),
}


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in [0, 255]; inputs of equal shape, output shape + (3,)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]
    return np.clip(rgb * 255.0, 0, 255)
