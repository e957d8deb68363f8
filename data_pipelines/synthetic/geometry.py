"""Shape outlines as polygons, shared by the renderer and the checker's shape templates.

Each outline is given in local coordinates: centred on the object, y pointing down, the
object's half-extent equal to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .palette import SHAPES

Point = tuple[float, float]


def _regular(n: int, radius: float, start_deg: float = -90.0) -> list[Point]:
    return [
        (radius * math.cos(math.radians(start_deg + 360.0 * i / n)), radius * math.sin(math.radians(start_deg + 360.0 * i / n)))
        for i in range(n)
    ]


def _star(points: int = 5, inner: float = 0.45) -> list[Point]:
    outer = _regular(points, 1.0)
    inner_pts = _regular(points, inner, start_deg=-90.0 + 180.0 / points)
    return [p for pair in zip(outer, inner_pts) for p in pair]


def _cross(arm: float = 0.32, extent: float = 0.95) -> list[Point]:
    a, e = arm, extent
    return [(-a, -e), (a, -e), (a, -a), (e, -a), (e, a), (a, a), (a, e), (-a, e), (-a, a), (-e, a), (-e, -a), (-a, -a)]


_OUTLINES: dict[str, tuple[Point, ...]] = {
    "circle": tuple(_regular(96, 1.0)),
    "square": ((-0.88, -0.88), (0.88, -0.88), (0.88, 0.88), (-0.88, 0.88)),
    "triangle": ((0.0, -0.9), (1.0, 0.9), (-1.0, 0.9)),
    "star": tuple(_star()),
    "diamond": ((0.0, -1.0), (0.78, 0.0), (0.0, 1.0), (-0.78, 0.0)),
    "cross": tuple(_cross()),
}
assert set(_OUTLINES) == set(SHAPES)


def outline(shape: str) -> tuple[Point, ...]:
    """The shape's polygon in local coordinates (half-extent 1)."""
    return _OUTLINES[shape]


def local_bbox(shape: str) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the outline in local coordinates."""
    xs, ys = zip(*_OUTLINES[shape])
    return min(xs), min(ys), max(xs), max(ys)


def place(shape: str, center_x: float, center_y: float, half_extent: float) -> list[Point]:
    """The outline in continuous pixel coordinates (pixel j spans [j, j + 1))."""
    return [(center_x + half_extent * u, center_y + half_extent * v) for u, v in _OUTLINES[shape]]


def draw_polygon(draw: ImageDraw.ImageDraw, points: list[Point], supersample: int, fill) -> None:
    """Fill a polygon given in final-image pixel coordinates on a canvas ``supersample`` times larger."""
    # Measured: with PIL's fill rule, x -> x * k leaves the centroid of the downsampled coverage unbiased.
    draw.polygon([(x * supersample, y * supersample) for x, y in points], fill=fill)


def coverage(points: list[Point], height: int, width: int, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel of a ``height`` x ``width`` grid covered by a polygon, float in [0, 1]."""
    canvas = Image.new("L", (width * supersample, height * supersample), 0)
    draw_polygon(ImageDraw.Draw(canvas), points, supersample, 255)
    return np.asarray(canvas.reduce(supersample), dtype=np.float64) / 255.0


@dataclass(frozen=True)
class OutlineMoments:
    """Area, centroid and per-area second central moments of an outline in local units."""

    area: float
    centroid: Point
    var_x: float
    var_y: float


@lru_cache(maxsize=None)
def outline_moments(shape: str) -> OutlineMoments:
    """Exact polygon moments (shoelace formulas)."""
    pts = _OUTLINES[shape]
    area = cx = cy = ixx = iyy = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        cross = x0 * y1 - x1 * y0
        area += cross / 2.0
        cx += (x0 + x1) * cross / 6.0
        cy += (y0 + y1) * cross / 6.0
        ixx += (x0 * x0 + x0 * x1 + x1 * x1) * cross / 12.0
        iyy += (y0 * y0 + y0 * y1 + y1 * y1) * cross / 12.0
    cx, cy = cx / area, cy / area
    return OutlineMoments(abs(area), (cx, cy), ixx / area - cx * cx, iyy / area - cy * cy)
