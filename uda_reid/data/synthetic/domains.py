"""Synthetic domain specifications: identity attribute distributions and camera styles.

Domains differ in (a) how identities dress (palettes, patterns, bags, body shape) and
(b) how their cameras render (colour cast, gamma, blur, noise, background, resolution), so a
model trained on one loses accuracy on the other while the figures stay of the same kind.

A domain has numbered versions (``DATASETS.SYNTH_VERSION``). In version 1 a camera is a
global colour transform plus blur and noise, so shifting an image by the difference of two
cameras' mean colours moves most images into the other camera. Version 2 adds
:class:`CameraEffects` that such a shift cannot undo (local illumination, viewpoint, a fixed
sensor pattern, the camera's own occluder, saturation and contrast) and a time of day per
image. ``synth-msmt`` exists in version 2 only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
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
class CameraEffects:
    """What one camera does beyond a global colour transform (domain version 2).

    Positions are fractions of the image (0 top/left, 1 bottom/right)."""

    spot: Tuple[float, float, float, float]  # light spot (y, x, radius / height, gain at centre)
    gradient: Tuple[float, float]  # illumination gain slope from top to bottom, left to right
    zoom: float  # figure scale about its feet (distance of the camera)
    offset: Tuple[float, float]  # figure shift (y, x)
    shear: float  # horizontal shear of the figure per unit height (a tilted view)
    occluder: int  # 0 none, 1 pole, 2 railing across the legs, 3 sign in a top corner
    occluder_position: float  # x of a pole, y of a railing, side of a sign (< 0.5 left)
    occluder_prob: float
    occluder_colour: Tuple[int, int, int]
    pattern: float  # strength of the fixed sensor pattern (row/column banding), [0, 255] scale
    saturation: float  # gain on the distance of each pixel from its grey
    contrast: float  # gain on the distance of each pixel from the image's mean luminance


@dataclass(frozen=True)
class TimeOfDay:
    """Light of one time of day: a gain, a colour temperature and the sun's side."""

    name: str  # as MSMT17 file names spell it: morning | noon | afternoon
    gain: float
    cast: Tuple[float, float, float]
    slope: float  # left-to-right gain slope (the sun's side)


TIMES_OF_DAY: Tuple[TimeOfDay, ...] = (
    TimeOfDay("morning", 0.90, (0.97, 0.99, 1.05), -0.25),
    TimeOfDay("noon", 1.05, (1.02, 1.01, 0.97), 0.0),
    TimeOfDay("afternoon", 0.93, (1.06, 1.00, 0.92), 0.25),
)


@dataclass(frozen=True)
class DomainSpec:
    name: str
    layout: str  # "market1501" | "dukemtmc" | "msmt17"
    attributes: AttributeDistribution
    cameras: Tuple[CameraStyle, ...]
    effects: Tuple[CameraEffects, ...] = ()  # one per camera (version 2), or none
    times_of_day: Tuple[TimeOfDay, ...] = ()  # drawn per image when given
    identity_factor: float = 1.0  # identities relative to the scale's counts
    val_share: float = 0.0  # share of training images listed as validation (MSMT17 layout)

    def __post_init__(self) -> None:
        if self.effects and len(self.effects) != len(self.cameras):
            raise ValueError(f"{self.name}: {len(self.effects)} camera effects for "
                             f"{len(self.cameras)} cameras")
        if self.layout == "msmt17" and not self.times_of_day:
            raise ValueError(f"{self.name}: MSMT17 file names need a time of day per image")

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    def identities(self, count: int) -> int:
        """The number of identities this domain has where a scale asks for ``count``."""
        return max(int(round(count * self.identity_factor)), 1)


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


def _drawn_effects(count: int, seed: int) -> Tuple[CameraEffects, ...]:
    """``count`` cameras' version-2 effects, drawn from fixed ranges by a fixed ``seed`` (the
    same ranges for every domain: the domains share the kind of effect, not its values)."""
    rng = np.random.default_rng([seed, 2])
    effects = []
    for index in range(count):  # light spots alternate: bright, shadow, bright...
        effects.append(CameraEffects(
            spot=(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.0, 1.0)),
                  float(rng.uniform(0.15, 0.35)),
                  float((-1) ** index * rng.uniform(0.15, 0.35) + 1.0)),
            gradient=(float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25))),
            zoom=float(rng.uniform(0.85, 1.05)),
            offset=(float(rng.uniform(-0.03, 0.04)), float(rng.uniform(-0.06, 0.06))),
            shear=float(rng.uniform(-0.1, 0.1)),
            occluder=int(rng.choice(4, p=(0.2, 0.3, 0.3, 0.2))),
            occluder_position=float(rng.uniform(0.15, 0.85)),
            occluder_prob=float(rng.uniform(0.3, 0.6)),
            occluder_colour=tuple(int(c) for c in rng.integers(30, 200, 3)),  # type: ignore
            pattern=float(rng.uniform(3.0, 9.0)),
            saturation=float(rng.uniform(0.8, 1.2)),
            contrast=float(rng.uniform(0.85, 1.15))))
    return tuple(effects)


def _msmt_cameras() -> Tuple[CameraStyle, ...]:
    """Fifteen cameras of a large campus (12 outdoor, 3 indoor), drawn by a fixed seed: mild to
    strong casts, mixed resolution; the indoor ones darker with warm walls."""
    rng = np.random.default_rng([17, 1])
    cameras = []
    for index in range(15):
        indoor = index >= 12
        background = rng.integers(120, 170, 3) if indoor else rng.integers(75, 175, 3)
        cameras.append(CameraStyle(
            cast=tuple(float(c) for c in rng.uniform(0.9, 1.1, 3)),  # type: ignore[arg-type]
            gamma=float(rng.uniform(0.9, 1.15)), blur=float(rng.uniform(0.3, 1.0)),
            noise=float(rng.uniform(3.0, 8.0)),
            background=tuple(int(c) for c in background),  # type: ignore[arg-type]
            texture=float(rng.uniform(0.1, 0.3)), resolution=float(rng.uniform(0.7, 1.0)),
            brightness=float(rng.uniform(0.8, 0.9) if indoor else rng.uniform(0.88, 1.05))))
    return tuple(cameras)


MARKET_ATTRIBUTES = AttributeDistribution(
    hue_centres=(0.0, 0.08, 0.16, 0.33, 0.5, 0.6, 0.75, 0.9), hue_spread=0.04,
    saturation=(0.45, 0.95), value=(0.45, 0.95),
    pattern_probs=(0.55, 0.2, 0.1, 0.15), bag_probs=(0.6, 0.25, 0.15),
    long_sleeve_prob=0.3, width_range=(0.34, 0.5), skirt_prob=0.15)
DUKE_ATTRIBUTES = AttributeDistribution(
    hue_centres=(0.04, 0.12, 0.3, 0.58, 0.66, 0.95), hue_spread=0.05,
    saturation=(0.25, 0.8), value=(0.3, 0.85),
    pattern_probs=(0.35, 0.15, 0.3, 0.2), bag_probs=(0.35, 0.45, 0.2),
    long_sleeve_prob=0.85, width_range=(0.40, 0.58), skirt_prob=0.05)
MSMT_ATTRIBUTES = AttributeDistribution(
    hue_centres=(0.0, 0.1, 0.2, 0.45, 0.62, 0.7, 0.85), hue_spread=0.06,
    saturation=(0.2, 0.9), value=(0.25, 0.9),
    pattern_probs=(0.45, 0.2, 0.15, 0.2), bag_probs=(0.45, 0.35, 0.2),
    long_sleeve_prob=0.6, width_range=(0.36, 0.56), skirt_prob=0.1)


def _versions_1_and_2(first: DomainSpec, effects_seed: int) -> Dict[int, DomainSpec]:
    """Version 1 (``first``) and version 2: the same identities, plan and camera styles plus
    camera effects drawn with ``effects_seed`` and a time of day per image."""
    return {1: first, 2: replace(first, effects=_drawn_effects(first.num_cameras, effects_seed),
                                 times_of_day=TIMES_OF_DAY)}


# Every version of every domain: DOMAINS[name][version].
DOMAINS: Dict[str, Dict[int, DomainSpec]] = {
    "synth-market": _versions_1_and_2(DomainSpec(
        name="synth-market", layout="market1501", attributes=MARKET_ATTRIBUTES,
        cameras=_market_cameras()), effects_seed=1),
    "synth-duke": _versions_1_and_2(DomainSpec(
        name="synth-duke", layout="dukemtmc", attributes=DUKE_ATTRIBUTES,
        cameras=_duke_cameras()), effects_seed=2),
    "synth-msmt": {
        2: DomainSpec(name="synth-msmt", layout="msmt17", attributes=MSMT_ATTRIBUTES,
                      cameras=_msmt_cameras(), effects=_drawn_effects(15, 3),
                      times_of_day=TIMES_OF_DAY, identity_factor=1.6, val_share=0.1)},
}
VERSIONS: Tuple[int, ...] = tuple(sorted({v for versions in DOMAINS.values() for v in versions}))


def resolve_version(name: str, version: int) -> int:
    """The version of domain ``name`` that benchmark version ``version`` uses: the newest one
    up to ``version``, else the domain's first (a domain added later, e.g. ``synth-msmt``,
    has no older one). ``name`` and ``version`` must be known (:data:`DOMAINS`,
    :data:`VERSIONS`)."""
    versions = sorted(DOMAINS[name])
    return max((v for v in versions if v <= version), default=versions[0])


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
