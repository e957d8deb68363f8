"""Seeded sampling of SceneSpecs: a seed always gives the same scene."""

from __future__ import annotations

import random

from .palette import BACKGROUNDS, COLORS, RELATIONS, SHAPES, SIZES
from .spec import Relation, SceneObject, SceneSpec

GAP = 0.08  # minimum empty space between two objects' boxes, fraction of the shorter side
MARGIN = 0.03  # minimum space between an object's box and the image border
RELATION_SLOPE = 0.1  # |cross-axis offset| <= slope * |main-axis offset|, so the relation is unambiguous
_KIND_WEIGHTS = {"single": 2, "counting": 3, "pair": 2, "relation": 3}
_PAIR_COUNTS = ((1, 1), (1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (2, 2))
_SIZE_NAMES = tuple(SIZES)
_COLOR_NAMES = tuple(COLORS)
_BACKGROUND_NAMES = tuple(BACKGROUNDS)


def generate_scene(seed: int) -> SceneSpec:
    rng = random.Random(seed)
    kind = rng.choices(tuple(_KIND_WEIGHTS), weights=tuple(_KIND_WEIGHTS.values()))[0]
    background = rng.choice(_BACKGROUND_NAMES)
    if kind == "relation":
        objects, relation = _relation_scene(rng)
        return SceneSpec(seed=seed, kind=kind, background=background, objects=objects, relation=relation)
    if kind == "single":
        groups = [(_kind(rng), 1)]
    elif kind == "counting":
        groups = [(_kind(rng), rng.choice((2, 3, 4)))]
    else:
        first = _kind(rng)
        second = _kind(rng, exclude=first)
        counts = rng.choice(_PAIR_COUNTS)
        groups = [(first, counts[0]), (second, counts[1])]
    sizes = [rng.choice(_SIZE_NAMES) for _ in groups]
    objects = _place_groups(rng, groups, sizes)
    return SceneSpec(seed=seed, kind=kind, background=background, objects=objects)


def _kind(rng: random.Random, exclude: tuple[str, str] | None = None) -> tuple[str, str]:
    while True:
        kind = (rng.choice(_COLOR_NAMES), rng.choice(SHAPES))
        if kind != exclude:
            return kind


def _apart(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Boxes of two (x, y, extent) objects are separated by at least GAP along some axis."""
    need = a[2] + b[2] + GAP
    return abs(a[0] - b[0]) >= need or abs(a[1] - b[1]) >= need


def _place_groups(rng: random.Random, groups: list[tuple[tuple[str, str], int]], sizes: list[str]) -> tuple[SceneObject, ...]:
    """Rejection-sample non-overlapping positions; shrink the largest group if a layout keeps failing."""
    while True:
        extents = [SIZES[size] for size, (_, count) in zip(sizes, groups) for _ in range(count)]
        centers = _sample_layout(rng, extents)
        if centers is not None:
            break
        largest = max(range(len(sizes)), key=lambda i: SIZES[sizes[i]])
        sizes[largest] = _SIZE_NAMES[_SIZE_NAMES.index(sizes[largest]) - 1]
    objects = []
    it = iter(centers)
    for ((color, shape), count), size in zip(groups, sizes):
        for _ in range(count):
            x, y = next(it)
            objects.append(SceneObject(shape=shape, color=color, size=size, x=x, y=y, extent=SIZES[size]))
    return tuple(objects)


def _sample_layout(rng: random.Random, extents: list[float], restarts: int = 50, tries: int = 50) -> list[tuple[float, float]] | None:
    for _ in range(restarts):
        placed: list[tuple[float, float, float]] = []
        for e in extents:
            lo, hi = MARGIN + e, 1.0 - MARGIN - e
            for _ in range(tries):
                candidate = (round(rng.uniform(lo, hi), 4), round(rng.uniform(lo, hi), 4), e)
                if all(_apart(candidate, p) for p in placed):
                    placed.append(candidate)
                    break
            else:
                break
        if len(placed) == len(extents):
            return [(x, y) for x, y, _ in placed]
    return None


def _relation_scene(rng: random.Random) -> tuple[tuple[SceneObject, ...], Relation]:
    subject_kind = _kind(rng)
    object_kind = _kind(rng, exclude=subject_kind)
    predicate = rng.choice(RELATIONS)
    size_subject, size_object = rng.choice(_SIZE_NAMES), rng.choice(_SIZE_NAMES)
    e_subject, e_object = SIZES[size_subject], SIZES[size_object]
    # Lay out along the main axis as (first, second) = (left, right) or (top, bottom).
    subject_first = predicate in ("left of", "above")
    e_first, e_second = (e_subject, e_object) if subject_first else (e_object, e_subject)
    min_sep = e_first + e_second + GAP
    max_sep = 1.0 - 2 * MARGIN - e_first - e_second
    separation = rng.uniform(min_sep, max_sep)
    main_first = rng.uniform(MARGIN + e_first, 1.0 - MARGIN - e_second - separation)
    main_second = main_first + separation
    cross_offset = rng.uniform(-RELATION_SLOPE, RELATION_SLOPE) * separation
    e_max = max(e_first, e_second)
    cross_mid = rng.uniform(MARGIN + e_max + abs(cross_offset) / 2, 1.0 - MARGIN - e_max - abs(cross_offset) / 2)
    first = (main_first, cross_mid - cross_offset / 2)
    second = (main_second, cross_mid + cross_offset / 2)
    if predicate in ("above", "below"):
        first, second = (first[1], first[0]), (second[1], second[0])
    (x_s, y_s), (x_o, y_o) = (first, second) if subject_first else (second, first)
    subject = SceneObject(subject_kind[1], subject_kind[0], size_subject, round(x_s, 4), round(y_s, 4), e_subject)
    obj = SceneObject(object_kind[1], object_kind[0], size_object, round(x_o, 4), round(y_o, 4), e_object)
    return (subject, obj), Relation(subject=0, predicate=predicate, object=1)
