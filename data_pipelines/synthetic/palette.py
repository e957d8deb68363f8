"""The closed vocabulary of synthetic scenes: shapes, object colors, sizes, backgrounds, relations.

Object colors are saturated and far apart in HSV hue; every background is a neutral gray
(zero chroma). Mixing a color with a gray (antialiasing, blur, JPEG chroma subsampling)
keeps its HSV hue and only lowers its chroma, so the checker can tell objects from the
background by chroma and tell colors apart by hue, and no background can ever be mistaken
for an object.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")


@dataclass(frozen=True)
class Color:
    name: str
    rgb: tuple[int, int, int]

    @property
    def hue(self) -> float:
        """HSV hue in degrees, [0, 360)."""
        h, _, _ = colorsys.rgb_to_hsv(*(c / 255 for c in self.rgb))
        return h * 360.0

    @property
    def chroma(self) -> int:
        """max(rgb) - min(rgb), 0..255: zero for grays."""
        return max(self.rgb) - min(self.rgb)


# Hues 357, 28, 57, 130, 186, 224, 275, 321 degrees: neighbours are at least 28 degrees apart.
COLORS: dict[str, Color] = {
    c.name: c
    for c in (
        Color("red", (220, 30, 40)),
        Color("orange", (245, 120, 10)),
        Color("yellow", (235, 225, 25)),
        Color("green", (30, 175, 55)),
        Color("cyan", (20, 190, 210)),
        Color("blue", (35, 85, 225)),
        Color("purple", (140, 40, 210)),
        Color("pink", (245, 90, 190)),
    )
}

# Half-extent of an object as a fraction of the image's shorter side.
SIZES: dict[str, float] = {"small": 0.10, "medium": 0.14, "large": 0.19}


@dataclass(frozen=True)
class Background:
    name: str
    start_gray: int  # gray level at the top (vertical) or left (horizontal) edge
    end_gray: int
    direction: str  # "none", "vertical" or "horizontal"
    phrase: str  # how captions describe it


BACKGROUNDS: dict[str, Background] = {
    b.name: b
    for b in (
        Background("white", 250, 250, "none", "white"),
        Background("light_gray", 214, 214, "none", "light gray"),
        Background("gray", 140, 140, "none", "gray"),
        Background("dark_gray", 52, 52, "none", "dark gray"),
        Background("white_to_gray", 252, 170, "vertical", "white-to-gray gradient"),
        Background("dark_to_gray", 40, 120, "vertical", "dark gradient"),
        Background("gray_to_white", 190, 250, "horizontal", "soft gray gradient"),
    )
}

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

SCENE_KINDS: tuple[str, ...] = ("single", "counting", "pair", "relation")
MAX_OBJECTS = 4
