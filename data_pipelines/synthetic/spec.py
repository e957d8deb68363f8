"""SceneSpec: everything needed to render, caption and check one synthetic scene.

Geometry is resolution-free: an object's centre is a fraction of the image width/height and
its half-extent a fraction of the shorter side. A layout valid in the unit square (objects
inside it and apart) therefore stays valid at every aspect ratio: stretching one axis only
moves objects further apart.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .palette import BACKGROUNDS, COLORS, MAX_OBJECTS, RELATIONS, SCENE_KINDS, SHAPES, SIZES

SPEC_VERSION = 1


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str  # "small" | "medium" | "large"
    x: float  # centre, fraction of image width
    y: float  # centre, fraction of image height
    extent: float  # half-extent, fraction of the shorter image side

    @property
    def kind(self) -> tuple[str, str]:
        return self.color, self.shape


@dataclass(frozen=True)
class Relation:
    subject: int  # index into SceneSpec.objects
    predicate: str  # one of palette.RELATIONS: "<subject> <predicate> <object>"
    object: int


@dataclass(frozen=True)
class ObjectGroup:
    """Objects of one kind (color, shape) in a scene, in order of first appearance."""

    color: str
    shape: str
    size: str
    count: int


@dataclass(frozen=True)
class SceneSpec:
    seed: int
    kind: str  # one of palette.SCENE_KINDS
    background: str
    objects: tuple[SceneObject, ...]
    relation: Relation | None = None
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid SceneSpec: " + "; ".join(problems))

    def groups(self) -> list[ObjectGroup]:
        counts = Counter(o.kind for o in self.objects)
        first: dict[tuple[str, str], SceneObject] = {}
        for o in self.objects:
            first.setdefault(o.kind, o)
        return [ObjectGroup(o.color, o.shape, o.size, counts[k]) for k, o in first.items()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneSpec":
        relation = data.get("relation")
        return cls(
            seed=int(data["seed"]),
            kind=data["kind"],
            background=data["background"],
            objects=tuple(SceneObject(**o) for o in data["objects"]),
            relation=Relation(**relation) if relation else None,
            version=int(data.get("version", SPEC_VERSION)),
        )

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> "SceneSpec":
        return cls.from_dict(text if isinstance(text, dict) else json.loads(text))


def _problems(spec: SceneSpec) -> list[str]:
    problems = []
    if spec.kind not in SCENE_KINDS:
        problems.append(f"kind {spec.kind!r} not in {SCENE_KINDS}")
    if spec.background not in BACKGROUNDS:
        problems.append(f"background {spec.background!r} not in {tuple(BACKGROUNDS)}")
    if not 1 <= len(spec.objects) <= MAX_OBJECTS:
        problems.append(f"{len(spec.objects)} objects, expected 1..{MAX_OBJECTS}")
    for o in spec.objects:
        if o.shape not in SHAPES or o.color not in COLORS or o.size not in SIZES:
            problems.append(f"unknown shape/color/size in {o}")
        if not (0.0 <= o.x <= 1.0 and 0.0 <= o.y <= 1.0 and 0.0 < o.extent <= 0.5):
            problems.append(f"object geometry out of range in {o}")
    r = spec.relation
    if r is not None:
        if r.predicate not in RELATIONS:
            problems.append(f"relation {r.predicate!r} not in {RELATIONS}")
        if not (0 <= r.subject < len(spec.objects) and 0 <= r.object < len(spec.objects)) or r.subject == r.object:
            problems.append(f"relation indices {r.subject}, {r.object} invalid for {len(spec.objects)} objects")
    return problems
