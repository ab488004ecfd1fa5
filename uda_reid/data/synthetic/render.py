"""Procedural rendering of person-like figures seen by a styled camera.

An identity is a set of attributes (clothing colours, pattern, bag, body shape); an image of
it adds view, pose, position, scale and occlusion jitter, then the camera's style, and in
domain version 2 the camera's effects (:mod:`uda_reid.data.synthetic.effects`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from uda_reid.data.synthetic.domains import (AttributeDistribution, CameraEffects, CameraStyle,
                                             TimeOfDay, hsv_to_rgb)
from uda_reid.data.synthetic.effects import (add_pattern, colour_response, draw_camera_occluder,
                                             illuminate, illumination_field, sensor_pattern,
                                             view_transform)

Colour = Tuple[int, int, int]


@dataclass(frozen=True)
class Identity:
    upper: Colour
    lower: Colour
    pattern_colour: Colour
    bag_colour: Colour
    hair: Colour
    skin: Colour
    shoes: Colour
    pattern: int  # 0 none, 1 horizontal stripes, 2 vertical stripes, 3 checks
    bag: int  # 0 none, 1 backpack, 2 handbag
    long_sleeves: bool
    skirt: bool
    width: float  # torso width as a fraction of the image width
    height: float  # figure height as a fraction of the image height
    stripe_period: int


def _colour(rng: np.random.Generator, attrs: AttributeDistribution) -> Colour:
    centre = attrs.hue_centres[rng.integers(len(attrs.hue_centres))]
    h = centre + rng.normal(0.0, attrs.hue_spread)
    s = rng.uniform(*attrs.saturation)
    v = rng.uniform(*attrs.value)
    rgb = hsv_to_rgb(np.array(h), np.array(s), np.array(v))
    return tuple(int(c) for c in rgb)  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator, attrs: AttributeDistribution) -> Identity:
    """Draw one identity's attributes from a domain's distribution."""
    skin_v = rng.uniform(0.35, 0.95)
    skin = tuple(int(c) for c in hsv_to_rgb(np.array(rng.uniform(0.03, 0.09)),
                                            np.array(rng.uniform(0.25, 0.6)), np.array(skin_v)))
    hair = tuple(int(c) for c in hsv_to_rgb(np.array(rng.uniform(0.02, 0.12)),
                                            np.array(rng.uniform(0.2, 0.8)),
                                            np.array(rng.uniform(0.05, 0.6))))
    return Identity(
        upper=_colour(rng, attrs), lower=_colour(rng, attrs), pattern_colour=_colour(rng, attrs),
        bag_colour=_colour(rng, attrs), hair=hair, skin=skin,  # type: ignore[arg-type]
        shoes=tuple(int(c) for c in rng.integers(10, 90, 3)),  # type: ignore[arg-type]
        pattern=int(rng.choice(4, p=attrs.pattern_probs)),
        bag=int(rng.choice(3, p=attrs.bag_probs)),
        long_sleeves=bool(rng.random() < attrs.long_sleeve_prob),
        skirt=bool(rng.random() < attrs.skirt_prob),
        width=float(rng.uniform(*attrs.width_range)), height=float(rng.uniform(0.82, 0.95)),
        stripe_period=int(rng.integers(4, 9)))


def _background(rng: np.random.Generator, style: CameraStyle, h: int, w: int) -> np.ndarray:
    base = np.array(style.background, dtype=np.float32)
    ramp = np.linspace(-25, 25, h, dtype=np.float32)[:, None, None]
    blobs = rng.normal(0, 1, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
    texture = np.asarray(Image.fromarray(((blobs * 40 + 128).clip(0, 255)).astype(np.uint8))
                         .resize((w, h), Image.BILINEAR), dtype=np.float32) - 128
    img = base + ramp + texture * style.texture * 2 + rng.normal(0, 6, 3)
    return img.clip(0, 255)


def _draw_figure(draw: ImageDraw.ImageDraw, ident: Identity, rng: np.random.Generator,
                 h: int, w: int) -> None:
    """Draw the figure (head, torso, arms, legs, bag, pattern) with view/pose jitter."""
    view = int(rng.integers(3))  # 0 front, 1 back, 2 side
    scale = rng.uniform(0.92, 1.04)
    fh = ident.height * h * scale
    cx = w / 2 + rng.normal(0, w * 0.04)
    top = (h - fh) / 2 + rng.normal(0, h * 0.02)
    tw = ident.width * w * (0.75 if view == 2 else 1.0)
    head_h, torso_h, legs_h = fh * 0.16, fh * 0.38, fh * 0.42
    head_w = max(tw * 0.45, 3)
    # legs (or skirt) below the torso, with a pose-dependent stride
    leg_top = top + head_h + torso_h
    stride = rng.uniform(0.0, 0.12) * w
    if ident.skirt:
        draw.polygon([(cx - tw * 0.45, leg_top), (cx + tw * 0.45, leg_top),
                      (cx + tw * 0.6, leg_top + legs_h * 0.55),
                      (cx - tw * 0.6, leg_top + legs_h * 0.55)], fill=ident.lower)
        for sx in (-1, 1):
            draw.rectangle([cx + sx * tw * 0.2 - tw * 0.08, leg_top + legs_h * 0.55,
                            cx + sx * tw * 0.2 + tw * 0.08, leg_top + legs_h], fill=ident.skin)
    else:
        for sx, jitter in ((-1, -stride / 2), (1, stride / 2)):
            x0 = cx + sx * tw * 0.23 + jitter
            draw.polygon([(cx + sx * tw * 0.02, leg_top), (cx + sx * tw * 0.45, leg_top),
                          (x0 + tw * 0.14, leg_top + legs_h), (x0 - tw * 0.14, leg_top + legs_h)],
                         fill=ident.lower)
    for sx, jitter in ((-1, -stride / 2), (1, stride / 2)):
        x0 = cx + sx * tw * 0.23 + jitter
        draw.rectangle([x0 - tw * 0.17, leg_top + legs_h - fh * 0.03, x0 + tw * 0.17,
                        leg_top + legs_h + fh * 0.02], fill=ident.shoes)
    # torso and arms
    t0, t1 = top + head_h, leg_top
    draw.rectangle([cx - tw / 2, t0, cx + tw / 2, t1], fill=ident.upper)
    arm_len = torso_h * (0.95 if ident.long_sleeves else 0.45)
    swing = rng.uniform(-0.06, 0.06) * w
    for sx in ((-1, 1) if view != 2 else (1,)):
        ax = cx + sx * (tw / 2 + tw * 0.1)
        draw.line([(ax, t0 + 2), (ax + sx * swing, t0 + arm_len)], fill=ident.upper,
                  width=max(int(tw * 0.18), 2))
        if not ident.long_sleeves:
            draw.line([(ax + sx * swing, t0 + arm_len), (ax + sx * swing * 1.6, t0 + torso_h)],
                      fill=ident.skin, width=max(int(tw * 0.14), 2))
    # clothing pattern on the torso
    period = max(int(ident.stripe_period * h / 128), 2)
    if ident.pattern in (1, 3):
        for y in np.arange(t0 + period / 2, t1, period * 2):
            draw.rectangle([cx - tw / 2, y, cx + tw / 2, y + period * 0.8],
                           fill=ident.pattern_colour)
    if ident.pattern in (2, 3):
        for x in np.arange(cx - tw / 2 + period / 2, cx + tw / 2, period * 2):
            draw.rectangle([x, t0, x + period * 0.8, t1], fill=ident.pattern_colour)
    # head with hair
    draw.ellipse([cx - head_w / 2, top, cx + head_w / 2, top + head_h * 1.05],
                 fill=ident.hair if view == 1 else ident.skin)
    draw.chord([cx - head_w / 2, top - 1, cx + head_w / 2, top + head_h * 0.6], 180, 360,
               fill=ident.hair)
    # bag: a backpack is seen from behind and the side, a handbag hangs at one hip
    if ident.bag == 1 and view in (1, 2):
        bx = cx + (tw * 0.25 if view == 2 else 0)
        draw.rectangle([bx - tw * 0.35, t0 + torso_h * 0.1, bx + tw * 0.35, t0 + torso_h * 0.8],
                       fill=ident.bag_colour)
    elif ident.bag == 1:
        draw.line([(cx - tw * 0.3, t0), (cx - tw * 0.3, t0 + torso_h * 0.6)],
                  fill=ident.bag_colour, width=max(int(w / 32), 1))
        draw.line([(cx + tw * 0.3, t0), (cx + tw * 0.3, t0 + torso_h * 0.6)],
                  fill=ident.bag_colour, width=max(int(w / 32), 1))
    elif ident.bag == 2:
        side = 1 if view != 2 else -1
        hx = cx + side * (tw / 2 + tw * 0.12)
        draw.rectangle([hx - tw * 0.15, t0 + torso_h * 0.7, hx + tw * 0.2, t0 + torso_h * 1.05],
                       fill=ident.bag_colour)


def _occlude(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int) -> None:
    """With some probability, an object (a pole, a passer-by's edge, a car) hides part."""
    if rng.random() < 0.25:
        oh = rng.uniform(0.15, 0.4) * h
        y0 = rng.uniform(0.5 * h, h - oh)
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        if rng.random() < 0.5:
            draw.rectangle([0, y0, w, y0 + oh], fill=colour)
        else:
            x0 = rng.uniform(-0.1, 0.8) * w
            draw.rectangle([x0, 0, x0 + rng.uniform(0.12, 0.3) * w, h], fill=colour)


def apply_camera_style(img: np.ndarray, style: CameraStyle, rng: np.random.Generator
                       ) -> np.ndarray:
    """Colour cast, brightness, gamma, resolution loss, blur and noise. (H, W, 3) uint8."""
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    x = x * np.array(style.cast, dtype=np.float32) * style.brightness * rng.uniform(0.92, 1.08)
    x = np.clip(x, 0, 1) ** style.gamma
    out = Image.fromarray((x * 255).astype(np.uint8))
    if style.resolution < 1.0:
        small = (max(int(w * style.resolution), 8), max(int(h * style.resolution), 16))
        out = out.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    sigma = style.blur * h / 128
    if sigma > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    arr = np.asarray(out, dtype=np.float32) + rng.normal(0, style.noise, (h, w, 3))
    return arr.clip(0, 255).astype(np.uint8)


def render_image(ident: Identity, style: CameraStyle, rng: np.random.Generator,
                 height: int, width: int) -> np.ndarray:
    """One image of ``ident`` seen by a camera with ``style``: (H, W, 3) uint8."""
    canvas = Image.fromarray(_background(rng, style, height, width).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    _draw_figure(draw, ident, rng, height, width)
    _occlude(draw, rng, height, width)
    return apply_camera_style(np.asarray(canvas), style, rng)


def render_with_effects(ident: Identity, style: CameraStyle, effects: CameraEffects,
                        rng: np.random.Generator, effect_rng: np.random.Generator,
                        height: int, width: int, camera_key: Sequence[int],
                        time: Optional[TimeOfDay] = None) -> np.ndarray:
    """:func:`render_image` with a version-2 camera: the figure seen through the camera's
    viewpoint, its occluder, the illumination field (and ``time`` of day) before the style,
    the colour response and the sensor pattern of ``camera_key`` after it. ``rng`` draws
    what :func:`render_image` draws, ``effect_rng`` the effects' chances. (H, W, 3) uint8."""
    canvas = Image.fromarray(_background(rng, style, height, width).astype(np.uint8))
    figure = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    _draw_figure(ImageDraw.Draw(figure), ident, rng, height, width)
    canvas = Image.alpha_composite(canvas.convert("RGBA"), view_transform(figure, effects))
    canvas = canvas.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    _occlude(draw, rng, height, width)
    draw_camera_occluder(draw, effects, effect_rng, height, width)
    lit = illuminate(np.asarray(canvas), illumination_field(height, width, effects, time))
    styled = colour_response(apply_camera_style(lit, style, rng), effects)
    return add_pattern(styled, sensor_pattern(height, width, effects, camera_key))
