"""Geometry of next-scale prediction, in one torch-free leaf module that every package imports.

- Bit widths: the supported d (latent channels, bits per latent cell) and the token width a
  transformer predicts (d, or 4d when a stride-8 tokenizer is 2x2 patchified).
- Strides: pixels per latent cell (16, or 8 with patchify); every token covers 16x16 pixels.
- Scale schedules: the ordered per-scale token grids (h, w). Every aspect-ratio template has one
  13-scale list in token units. A resolution takes the prefix whose last 1:1 side is
  ``resolution / 16``: 256 -> 7 scales (521 tokens), 512 -> 10, 768 -> 12, 1024 -> 13 (10,521 tokens),
  and the small CPU resolutions 64 -> 3 scales, 128 -> 5 scales. Portrait templates (h/w < 1) are the
  transposes of the landscape ones.

Values are checked here once (``check_d``, ``num_scales``, ``resolve_template``) and the config
validator and file readers call these checks; the modules below them trust what they are given.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

Grid = tuple[int, int]
Schedule = Sequence[Grid]
"""Per-scale (h, w) grids, coarsest first; functions that cache on a schedule take it as a tuple."""

PATCH_PIXELS = 16  # pixels per token side for a stride-16 tokenizer (or stride 8 + 2x2 patchify)
PATCHIFY_FACTOR = 2  # a patchified token is 2x2 latent cells

SUPPORTED_D: tuple[int, ...] = (8, 12, 14, 16, 24, 32, 48, 64)
"""Bits per latent cell (tokenizer channels d); 14 is Infinity-8B's patchified tokenizer."""


def check_d(d: int) -> int:
    """``d`` if the tokenizer can be built with it, else a clear error."""
    if d not in SUPPORTED_D:
        raise ValueError(f"bit width d={d} is not supported; choose one of {', '.join(map(str, SUPPORTED_D))}")
    return d


def latent_stride(patchify: bool) -> int:
    """Pixels per latent cell: 16, or 8 when a 2x2 patchify brings tokens back to 16x16 pixels."""
    return PATCH_PIXELS // PATCHIFY_FACTOR if patchify else PATCH_PIXELS


def bits_per_token(d: int, patchify: bool) -> int:
    """Bits the transformer predicts per token: d, or 4d for a patchified tokenizer."""
    return d * PATCHIFY_FACTOR**2 if patchify else d


def latent_schedule(token_schedule: Sequence[tuple[int, int]], patchify: bool) -> tuple[tuple[int, int], ...]:
    """Per-scale latent grids of a token schedule: the same, or twice each side with patchify."""
    factor = PATCHIFY_FACTOR if patchify else 1
    return tuple((h * factor, w * factor) for h, w in token_schedule)


def latent_grid(resolution: int, h_div_w: float = 1.0, patchify: bool = False) -> tuple[int, int]:
    """Latent (height, width) in cells at the schedule's last scale."""
    return latent_schedule(scale_schedule(resolution, h_div_w), patchify)[-1]

# h/w ratio -> 13 (h, w) token grids for h >= w; the values are the published schedule facts.
_LANDSCAPE_SCHEDULES: dict[float, tuple[tuple[int, int], ...]] = {
    1.000: ((1, 1), (2, 2), (4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32), (40, 40), (48, 48), (64, 64)),
    1.250: ((1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28), (45, 36), (55, 44), (70, 56)),
    1.333: ((1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27), (48, 36), (60, 45), (72, 54)),
    1.500: ((1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26), (48, 32), (63, 42), (78, 52)),
    1.750: ((1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24), (56, 32), (70, 40), (84, 48)),
    2.000: ((1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23), (60, 30), (74, 37), (90, 45)),
    2.500: ((1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20), (65, 26), (80, 32), (100, 40)),
    3.000: ((1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18), (72, 24), (90, 30), (111, 37)),
}


def _portrait_key(ratio: float) -> float:
    """The release's key for a portrait template: 1/ratio truncated to 3 decimals (1/1.5 -> 0.666)."""
    return int(1 / ratio * 1000) / 1000


def _build_templates() -> dict[float, tuple[tuple[int, int], ...]]:
    """Templates in the release's order: each landscape ratio followed by its portrait transpose."""
    templates: dict[float, tuple[tuple[int, int], ...]] = {}
    for ratio, grids in _LANDSCAPE_SCHEDULES.items():
        templates[ratio] = grids
        if ratio != 1.0:
            templates[_portrait_key(ratio)] = tuple((w, h) for h, w in grids)
    return templates


_RELEASE_ORDER: dict[float, tuple[tuple[int, int], ...]] = _build_templates()

TEMPLATES: dict[float, tuple[tuple[int, int], ...]] = dict(sorted(_RELEASE_ORDER.items()))
"""h/w template ratio -> the full 13-scale list of token grids (keys as the release spells them: 0.666 for 1:1.5)."""

ASPECT_RATIOS: tuple[float, ...] = tuple(TEMPLATES)
"""The 15 h/w templates, ascending."""

_SQUARE_SIDES = tuple(h for h, _ in TEMPLATES[1.0])
SUPPORTED_RESOLUTIONS: tuple[int, ...] = tuple(side * PATCH_PIXELS for side in _SQUARE_SIDES if side >= 4)
"""Resolutions (square side in pixels) that end exactly on a scale: 64, 96, 128, ..., 1024."""


def num_scales(resolution: int) -> int:
    """Number of scales used at ``resolution`` (the same for every aspect template)."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"resolution {resolution} does not end on a scale of the schedule; "
            f"supported resolutions: {', '.join(map(str, SUPPORTED_RESOLUTIONS))}"
        )
    return _SQUARE_SIDES.index(resolution // PATCH_PIXELS) + 1


def nearest_template(h_div_w: float) -> float:
    """The aspect template nearest an image's height / width, as the release picks it: the first minimum of
    |h/w - template| over the templates in the release's order (which settles exact midpoints)."""
    if not math.isfinite(h_div_w) or h_div_w <= 0:
        raise ValueError(f"image aspect ratio h/w must be a positive number, got {h_div_w}")
    return min(_RELEASE_ORDER, key=lambda t: abs(h_div_w - t))


TEMPLATE_KEY_TOLERANCE = 1e-3  # 0.667 (rounded) names the release's 0.666 (truncated) template too


def resolve_template(h_div_w: float) -> float:
    """The template ``h_div_w`` names (to within 0.001), else a clear error."""
    value = float(h_div_w)
    key = min(ASPECT_RATIOS, key=lambda t: abs(t - value))
    if not abs(key - value) <= TEMPLATE_KEY_TOLERANCE + 1e-9:
        raise ValueError(f"h/w {h_div_w} is not an aspect template; templates: {', '.join(f'{t:g}' for t in ASPECT_RATIOS)}")
    return key


@lru_cache(maxsize=None)
def scale_schedule(resolution: int, h_div_w: float = 1.0) -> tuple[tuple[int, int], ...]:
    """Ordered per-scale token grids (h, w) for ``resolution`` and an exact aspect template."""
    return TEMPLATES[resolve_template(h_div_w)][: num_scales(resolution)]


def pixel_size(resolution: int, h_div_w: float = 1.0) -> tuple[int, int]:
    """Image (height, width) in pixels that the schedule's final grid covers."""
    h, w = scale_schedule(resolution, h_div_w)[-1]
    return h * PATCH_PIXELS, w * PATCH_PIXELS


def num_tokens(schedule: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> int:
    return sum(h * w for h, w in schedule)


def attended_pairs(schedule: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> int:
    """Query-key pairs under the block-causal mask: each token sees its own and all earlier scales."""
    total, seen = 0, 0
    for h, w in schedule:
        seen += h * w
        total += h * w * seen
    return total
