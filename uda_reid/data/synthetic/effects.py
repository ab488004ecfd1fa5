"""Version-2 camera effects that a global colour shift cannot undo.

Each function does one effect on an (H, W, 3) image or a PIL layer: a spatial illumination
field (gradient, light spot, time of day), the camera's viewpoint on the figure (zoom, shift,
shear about the feet), the camera's own occluder, a saturation and contrast response, and a
fixed sensor pattern (row and column banding that is the same in every image of a camera).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from uda_reid.data.synthetic.domains import CameraEffects, TimeOfDay

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def illumination_field(height: int, width: int, effects: CameraEffects,
                       time: Optional[TimeOfDay] = None) -> np.ndarray:
    """Per-pixel, per-channel light gain (H, W, 3): the camera's linear gradient and light
    spot, times the time of day's gain, colour and left-to-right slope. Never below 0.05."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    spot_y, spot_x, radius, spot_gain = effects.spot
    aspect = width / height  # the spot is round in pixels
    dist2 = (y - spot_y) ** 2 + ((x - spot_x) * aspect) ** 2
    gain = (1.0 + effects.gradient[0] * (y - 0.5) + effects.gradient[1] * (x - 0.5)
            + (spot_gain - 1.0) * np.exp(-dist2 / (2.0 * radius ** 2)))
    colour = np.ones(3, dtype=np.float32)
    if time is not None:
        gain = gain * time.gain * (1.0 + time.slope * (x - 0.5))
        colour = np.array(time.cast, dtype=np.float32)
    return np.maximum(gain, 0.05)[..., None] * colour


def illuminate(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image times an (H, W, 3) gain field, clipped: uint8."""
    return (image.astype(np.float32) * field).clip(0, 255).astype(np.uint8)


def view_transform(layer: Image.Image, effects: CameraEffects) -> Image.Image:
    """The figure layer (RGBA) as the camera sees it: scaled by ``zoom`` about the bottom
    centre (the feet stay on the ground), sheared by ``shear`` and shifted by ``offset``;
    uncovered pixels are transparent."""
    width, height = layer.size
    zoom, shear = effects.zoom, effects.shear
    anchor_x, anchor_y = width / 2.0, float(height)
    shift_x, shift_y = effects.offset[1] * width, effects.offset[0] * height
    # forward map: x' = ax + zoom * (x - ax) + shear * (y' - ay) + sx, y' = ay + zoom * (y - ay)
    # + sy; PIL wants the inverse (output pixel -> input pixel).
    a = 1.0 / zoom
    coefficients = (a, -shear * a, anchor_x - a * (anchor_x + shift_x) + shear * a * (anchor_y),
                    0.0, a, anchor_y - a * (anchor_y + shift_y))
    return layer.transform((width, height), Image.AFFINE, coefficients, Image.BILINEAR)


def draw_camera_occluder(draw: ImageDraw.ImageDraw, effects: CameraEffects,
                         rng: np.random.Generator, height: int, width: int) -> bool:
    """Draw the camera's fixed occluder with probability ``occluder_prob``: a pole at x =
    ``occluder_position``, a railing across the image at y = ``occluder_position`` (lower
    half) or a sign in the top corner on the side of ``occluder_position``. Whether it
    was drawn."""
    if effects.occluder == 0 or rng.random() >= effects.occluder_prob:
        return False
    colour = effects.occluder_colour
    position = effects.occluder_position
    if effects.occluder == 1:
        x0 = position * width
        draw.rectangle([x0 - 0.06 * width, 0, x0 + 0.06 * width, height], fill=colour)
    elif effects.occluder == 2:
        y0 = (0.5 + 0.4 * position) * height
        draw.rectangle([0, y0 - 0.05 * height, width, y0 + 0.05 * height], fill=colour)
        for x in np.linspace(0.1, 0.9, 4) * width:
            draw.line([(x, y0), (x, height)], fill=colour, width=max(width // 32, 1))
    else:
        left = position < 0.5
        x0, x1 = (0.0, 0.4 * width) if left else (0.6 * width, float(width))
        draw.rectangle([x0, 0, x1, 0.22 * height], fill=colour)
    return True


def colour_response(image: np.ndarray, effects: CameraEffects) -> np.ndarray:
    """Saturation and contrast of the camera: each pixel's distance from its grey scaled by
    ``saturation``, then each luminance's distance from the image mean by ``contrast``.
    (H, W, 3) uint8 -> uint8."""
    x = image.astype(np.float32)
    grey = x @ LUMA
    x = grey[..., None] + effects.saturation * (x - grey[..., None])
    x = grey.mean() + effects.contrast * (x - grey.mean())
    return x.clip(0, 255).astype(np.uint8)


def sensor_pattern(height: int, width: int, effects: CameraEffects, camera_key: Sequence[int]
                   ) -> np.ndarray:
    """The camera's fixed pattern noise (H, W, 3) on the [0, 255] scale: row and column
    banding of std ``pattern`` (per channel, a little stronger in blue), the same in every
    image of the camera that ``camera_key`` (non-negative integers) names, at this size."""
    rng = np.random.default_rng([*camera_key, height, width])
    rows = rng.normal(0.0, 1.0, (height, 1, 3))
    columns = rng.normal(0.0, 1.0, (1, width, 3))
    pattern = (rows + columns) / np.sqrt(2.0) * np.array([0.8, 0.9, 1.3])
    return (effects.pattern * pattern).astype(np.float32)


def add_pattern(image: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 plus a fixed pattern, clipped: uint8."""
    return (image.astype(np.float32) + pattern).clip(0, 255).astype(np.uint8)
