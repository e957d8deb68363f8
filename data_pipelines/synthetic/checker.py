"""GenEval-style checker: does an image show what a SceneSpec says?

Detection is pixel-level and deterministic, with no learned parts:

1. Segmentation by color. A pixel belongs to an object if its chroma (max - min of RGB) is
   at least half the chroma of the nearest palette color by HSV hue (and at least
   ``CHROMA_FLOOR``): backgrounds are neutral grays, and blending a color with gray keeps
   its hue, so a 50%-coverage edge pixel sits exactly on the threshold.
2. Connected components (8-neighbourhood) per palette color; components smaller than
   ``MIN_AREA_FRACTION`` of the shorter side squared are noise and dropped.
3. Shape: the component's soft coverage (chroma / palette chroma) is compared, by soft IoU,
   with each shape's outline fitted to the component's moments and rendered (see
   ``classify_shape``), sharp and slightly blurred; the best match wins if its IoU reaches
   ``MIN_SHAPE_IOU``, else the shape is unknown (None) and the component matches nothing.
   This stays reliable down to objects a few pixels across, where corner counting or fill
   ratios break down.

Criteria, each 1.0 (pass) or 0.0 (fail) per image, ``None`` when not applicable:

- ``object``: every object kind of the spec has a detection of its shape (any color).
- ``color``: every object kind has a detection of its shape in its color (attribute binding).
- ``count``: every object kind (color + shape) is detected exactly as many times as specified.
- ``position`` (relation scenes only): the largest detection of the subject kind and of the
  object kind are in the stated relation, judged like GenEval (box centres, offsets reduced by
  0.1 x the box sizes, the direction's share of the offset must exceed 0.5).

``overall`` is 1.0 only if every applicable criterion passes (GenEval scores an image as
correct or not); dataset accuracies are means over images.

Chance level: ``oracle_check(spec, other)`` applies the same criteria to the exact objects of
another scene, i.e. how often a random scene truly satisfies a random spec. A checker that
does not hallucinate scores mismatched (spec, image) pairs at or below that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .geometry import coverage, outline, outline_moments
from .palette import COLORS, SHAPES
from .render import object_outline
from .spec import SceneSpec

CRITERIA: tuple[str, ...] = ("object", "color", "count", "position")
CHROMA_FLOOR = 40  # never call a pixel with less chroma than this an object pixel (0..255)
MIN_AREA_FRACTION = 0.0025  # components below this x shorter_side^2 pixels are noise (a small star is ~0.013)
MIN_AREA_PIXELS = 4
MIN_SHAPE_IOU = 0.5
POSITION_THRESHOLD = 0.1  # GenEval's box-size allowance when judging relative position

_COLOR_NAMES = tuple(COLORS)
_PALETTE_HUES = np.array([COLORS[c].hue for c in _COLOR_NAMES])
_PALETTE_CHROMA = np.array([COLORS[c].chroma for c in _COLOR_NAMES], dtype=np.float64)
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
_SOFT_MARGIN = 2  # pixels around a component whose partial coverage counts for its shape
_BLUR_SIGMAS = (0.0, 0.8)  # templates are also tried blurred: generated and JPEG-decoded edges are soft
_CLASSIFY_MAX_SIDE = 48  # larger objects are block-averaged down to about this size before classifying


@dataclass(frozen=True)
class Detection:
    color: str
    shape: str | None  # None: no shape template matched well enough
    shape_iou: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end-exclusive
    area: int  # pixels

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    @property
    def size(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return float(x1 - x0), float(y1 - y0)


def check(spec: SceneSpec, image: Image.Image | np.ndarray) -> dict[str, Any]:
    """Per-criterion scores, ``overall`` and ``num_detections`` for one image against its spec."""
    pixels = _as_rgb_array(image)
    detections = detect(pixels)
    height, width = pixels.shape[:2]
    return {**evaluate(spec, detections, height, width), "num_detections": len(detections)}


def detect(image: Image.Image | np.ndarray) -> list[Detection]:
    """All colored objects in the image, ordered by color then position."""
    pixels = _as_rgb_array(image)
    height, width = pixels.shape[:2]
    color_index, chroma, is_object = _segment(pixels)
    min_area = max(MIN_AREA_PIXELS, int(MIN_AREA_FRACTION * min(height, width) ** 2))
    detections = []
    for index, color in enumerate(_COLOR_NAMES):
        mask = is_object & (color_index == index)
        if not mask.any():
            continue
        labels, _ = ndimage.label(mask, structure=_EIGHT_NEIGHBOURS)
        for label, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
            area = int(np.count_nonzero(labels[ys, xs] == label))
            if area < min_area:
                continue
            # The component plus a soft margin: edge pixels below the 50% threshold still carry shape information.
            y0, y1 = max(ys.start - _SOFT_MARGIN, 0), min(ys.stop + _SOFT_MARGIN, height)
            x0, x1 = max(xs.start - _SOFT_MARGIN, 0), min(xs.stop + _SOFT_MARGIN, width)
            region_labels = labels[y0:y1, x0:x1]
            near = ndimage.binary_dilation(region_labels == label, structure=_EIGHT_NEIGHBOURS, iterations=_SOFT_MARGIN)
            own = near & ((region_labels == label) | (region_labels == 0)) & (color_index[y0:y1, x0:x1] == index)
            weights = np.where(own, np.clip(chroma[y0:y1, x0:x1] / _PALETTE_CHROMA[index], 0.0, 1.0), 0.0)
            shape, iou = classify_shape(weights)
            detections.append(Detection(color, shape, iou, (xs.start, ys.start, xs.stop, ys.stop), area))
    return detections


def classify_shape(weights: np.ndarray) -> tuple[str | None, float]:
    """Best shape for one object's soft mask (per-pixel coverage in [0, 1]), with its soft IoU.

    Analysis by synthesis: for each candidate shape, place its outline so that its area-weighted
    centroid and per-axis spread match the mask's moments, render its pixel coverage exactly as
    the renderer would, and compare. Moments of an antialiased render are those of the true
    outline plus 1/12 pixel^2 per axis (the pixel box), so the true shape is recovered exactly
    even at a few pixels across; a stretched (generated) shape is fitted by the per-axis scale.
    Each shape is also tried as if blurred by a Gaussian of sigma 0.8 pixel (its variance taken
    out of the fit, the template blurred), for soft generated or JPEG-decoded edges.
    """
    factor = max(1, math.ceil(max(weights.shape) / _CLASSIFY_MAX_SIDE))
    if factor > 1:
        weights = _block_mean(weights, factor)
    total = weights.sum()
    if total <= 0:
        return None, 0.0
    height, width = weights.shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    cx, cy = (weights * xs).sum() / total, (weights * ys).sum() / total
    var_x = max((weights * (xs - cx) ** 2).sum() / total - 1.0 / 12.0, 1e-3)
    var_y = max((weights * (ys - cy) ** 2).sum() / total - 1.0 / 12.0, 1e-3)
    best_shape, best_iou = None, 0.0
    for shape in SHAPES:
        moments = outline_moments(shape)
        for sigma in _BLUR_SIGMAS:
            spread_x, spread_y = max(var_x - sigma**2, 1e-3), max(var_y - sigma**2, 1e-3)
            scale_x, scale_y = math.sqrt(spread_x / moments.var_x), math.sqrt(spread_y / moments.var_y)
            origin_x, origin_y = cx - scale_x * moments.centroid[0], cy - scale_y * moments.centroid[1]
            points = [(origin_x + scale_x * u, origin_y + scale_y * v) for u, v in outline(shape)]
            template = coverage(points, height, width)
            if sigma > 0:
                template = ndimage.gaussian_filter(template, sigma, mode="constant")
            union = np.maximum(template, weights).sum()
            iou = float(np.minimum(template, weights).sum() / union) if union > 0 else 0.0
            if iou > best_iou:
                best_shape, best_iou = shape, iou
    return (best_shape if best_iou >= MIN_SHAPE_IOU else None), round(best_iou, 4)


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    height, width = array.shape
    padded = np.pad(array, ((0, -height % factor), (0, -width % factor)))
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).mean(axis=(1, 3))


def evaluate(spec: SceneSpec, detections: list[Detection], height: int, width: int) -> dict[str, Any]:
    """Score detections against a spec (shared by the pixel checker and the symbolic oracle)."""
    groups = spec.groups()

    def matching(color: str | None, shape: str) -> list[Detection]:
        return [d for d in detections if d.shape == shape and (color is None or d.color == color)]

    scores: dict[str, float | None] = {
        "object": float(all(matching(None, g.shape) for g in groups)),
        "color": float(all(matching(g.color, g.shape) for g in groups)),
        "count": float(all(len(matching(g.color, g.shape)) == g.count for g in groups)),
        "position": None,
    }
    if spec.relation is not None:
        subject, obj = spec.objects[spec.relation.subject], spec.objects[spec.relation.object]
        subjects, objects = matching(subject.color, subject.shape), matching(obj.color, obj.shape)
        holds = bool(subjects and objects) and spec.relation.predicate in relations_between(
            max(subjects, key=lambda d: d.area), max(objects, key=lambda d: d.area)
        )
        scores["position"] = float(holds)
    applicable = [v for v in scores.values() if v is not None]
    return {**scores, "overall": float(all(v == 1.0 for v in applicable))}


def relations_between(a: Detection, b: Detection) -> set[str]:
    """Relations that hold for "a <relation> b", GenEval's rule on box centres."""
    (ax, ay), (bx, by) = a.center, b.center
    (aw, ah), (bw, bh) = a.size, b.size
    offset = np.array([ax - bx, ay - by])
    allowance = POSITION_THRESHOLD * np.array([aw + bw, ah + bh])
    revised = np.maximum(np.abs(offset) - allowance, 0.0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    found = set()
    if dx < -0.5:
        found.add("left of")
    if dx > 0.5:
        found.add("right of")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


def spec_detections(spec: SceneSpec, height: int, width: int) -> list[Detection]:
    """The detections a perfect detector would return for a render of ``spec`` (the symbolic oracle)."""
    detections = []
    for obj in spec.objects:
        xs, ys = zip(*object_outline(obj, height, width))
        box = (int(round(min(xs))), int(round(min(ys))), int(round(max(xs))), int(round(max(ys))))
        detections.append(Detection(obj.color, obj.shape, 1.0, box, max(1, (box[2] - box[0]) * (box[3] - box[1]))))
    return detections


def oracle_check(spec: SceneSpec, scene: SceneSpec, height: int = 512, width: int = 512) -> dict[str, Any]:
    """Would a perfect checker accept a render of ``scene`` for ``spec``? Chance level for mismatched pairs."""
    return evaluate(spec, spec_detections(scene, height, width), height, width)


def _segment(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: nearest palette color by hue, chroma, and whether it is saturated enough to be an object."""
    rgb = pixels.astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    chroma = (high - low).astype(np.float64)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(
        high == r,
        ((g - b) / safe) % 6.0,
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    ) * 60.0
    distance = np.abs(hue[..., None] - _PALETTE_HUES)
    distance = np.minimum(distance, 360.0 - distance)
    color_index = distance.argmin(axis=2)
    is_object = chroma >= np.maximum(CHROMA_FLOOR, 0.5 * _PALETTE_CHROMA[color_index])
    return color_index, chroma, is_object


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {array.shape} dtype {array.dtype}")
    return array
