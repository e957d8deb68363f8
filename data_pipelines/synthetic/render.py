"""Deterministic, antialiased rendering of a SceneSpec at any resolution and aspect template."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from infinity_train.geometry import pixel_size

from .geometry import draw_polygon, place
from .palette import BACKGROUNDS, COLORS
from .spec import SceneObject, SceneSpec


def render_scene(spec: SceneSpec, resolution: int, h_div_w: float = 1.0) -> Image.Image:
    """Render at the pixel size of the (resolution, aspect template) pair, e.g. 64 at 1.0 -> 64x64."""
    height, width = pixel_size(resolution, h_div_w)
    return render_scene_at(spec, height, width)


def render_scene_at(spec: SceneSpec, height: int, width: int) -> Image.Image:
    """Render into an RGB image of exactly ``height`` x ``width`` pixels."""
    k = supersampling(height, width)
    canvas = Image.fromarray(_background(spec.background, height * k, width * k), "RGB")
    draw = ImageDraw.Draw(canvas)
    for obj in spec.objects:
        draw_polygon(draw, object_outline(obj, height, width), k, COLORS[obj.color].rgb)
    return canvas.reduce(k)


def supersampling(height: int, width: int) -> int:
    """Render this many times larger and box-downsample: 4x for small images, 2x above 512 pixels."""
    return 4 if max(height, width) <= 512 else 2


def object_outline(obj: SceneObject, height: int, width: int) -> list[tuple[float, float]]:
    """The object's polygon in pixel coordinates of a ``height`` x ``width`` image."""
    return place(obj.shape, obj.x * width, obj.y * height, obj.extent * min(height, width))


def _background(name: str, height: int, width: int) -> np.ndarray:
    bg = BACKGROUNDS[name]
    if bg.direction == "none":
        levels = np.full((height, width), bg.start_gray, dtype=np.float64)
    elif bg.direction == "vertical":
        levels = np.broadcast_to(np.linspace(bg.start_gray, bg.end_gray, height)[:, None], (height, width))
    else:
        levels = np.broadcast_to(np.linspace(bg.start_gray, bg.end_gray, width)[None, :], (height, width))
    gray = np.round(levels).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)
