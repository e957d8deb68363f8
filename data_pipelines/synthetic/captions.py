"""Natural-language captions of a SceneSpec: a long and a short one, in varied phrasings.

The phrasing is drawn from a random stream seeded by the spec's seed, so the same spec always
gets the same captions while a dataset shows many templates, synonyms and relation phrasings.
Every word choice keeps the meaning exact: synonyms only name the same shape or color, and a
relation may be stated from either side ("A left of B" or "B right of A").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .palette import BACKGROUNDS, INVERSE_RELATION
from .spec import ObjectGroup, SceneSpec

_CAPTION_STREAM = 0x5EED_CA9  # keeps caption choices independent of the scene sampler's stream

SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "circle": (("circle", "circles"), ("disc", "discs"), ("round disc", "round discs")),
    "square": (("square", "squares"), ("square tile", "square tiles")),
    "triangle": (("triangle", "triangles"), ("upward-pointing triangle", "upward-pointing triangles")),
    "star": (("star", "stars"), ("five-pointed star", "five-pointed stars")),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses")),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
}
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "cyan": ("cyan", "turquoise"),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized"),
    "large": ("large", "big"),
}
COUNT_WORDS: dict[int, tuple[str, ...]] = {
    1: ("a", "one", "a single"),
    2: ("two", "a pair of"),
    3: ("three",),
    4: ("four",),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left side of"),
    "right of": ("to the right of", "right of", "on the right side of"),
    "above": ("above", "over", "higher up than"),
    "below": ("below", "beneath", "under", "lower down than"),
}
_BACKGROUND_NOUNS = ("background", "backdrop")

_LONG_TEMPLATES: dict[str, tuple[str, ...]] = {
    "objects": (
        "{Objects} on a {background}.",
        "An image of {objects} on a {background}.",
        "A simple illustration showing {objects} against a {background}.",
        "{Objects}, drawn flat on a {background}.",
        "There {are} {objects} on a {background}.",
        "A minimal graphic: {objects} set on a {background}.",
    ),
    "relation": (
        "{Subject} {relation} {object}, on a {background}.",
        "An image of {subject} placed {relation} {object} on a {background}.",
        "On a {background}, {subject} sits {relation} {object}.",
        "A simple illustration: {subject} is {relation} {object}, against a {background}.",
        "{Subject} appears {relation} {object} on a {background}.",
    ),
}


@dataclass(frozen=True)
class Captions:
    long: str
    short: str


class _Lexicon:
    """Word choices for one caption: a shape or color keeps the same word throughout it.

    A canonical lexicon always uses the first (plain) word, for short captions.
    """

    def __init__(self, rng: random.Random, canonical: bool = False) -> None:
        self.rng = rng
        self.canonical = canonical
        self._shapes: dict[str, tuple[str, str]] = {}
        self._colors: dict[str, str] = {}

    def shape(self, shape: str, plural: bool) -> str:
        options = SHAPE_WORDS[shape][:1] if self.canonical else SHAPE_WORDS[shape]
        words = self._shapes.setdefault(shape, self.rng.choice(options))
        return words[1] if plural else words[0]

    def color(self, color: str) -> str:
        options = COLOR_WORDS[color][:1] if self.canonical else COLOR_WORDS[color]
        return self._colors.setdefault(color, self.rng.choice(options))

    def group(self, group: ObjectGroup, with_size: bool, count_word: str | None = None) -> str:
        words = [count_word or self.rng.choice(COUNT_WORDS[group.count])]
        if with_size:
            words.append(self.rng.choice(SIZE_WORDS[group.size]))
        words += [self.color(group.color), self.shape(group.shape, plural=group.count > 1)]
        return _fix_article(" ".join(words))


def make_captions(spec: SceneSpec) -> Captions:
    rng = random.Random(spec.seed * 1_000_003 + _CAPTION_STREAM)
    if spec.relation is not None:
        return _relation_captions(spec, rng)
    groups = spec.groups()
    if len(groups) > 1 and rng.random() < 0.5:
        groups.reverse()
    long_words, short_words = _Lexicon(rng), _Lexicon(rng, canonical=True)
    with_size = rng.random() < 0.6
    long_objects = _join([long_words.group(g, with_size) for g in groups])
    short_objects = _join([short_words.group(g, with_size=False) for g in groups])
    long = rng.choice(_LONG_TEMPLATES["objects"]).format(
        objects=long_objects,
        Objects=_capitalize(long_objects),
        background=_background_phrase(spec.background, rng),
        are="are" if len(spec.objects) > 1 else "is",
    )
    short = short_objects  # the minimal prompt: plain words, no background
    return Captions(long=long, short=short)


def _relation_captions(spec: SceneSpec, rng: random.Random) -> Captions:
    relation = spec.relation
    assert relation is not None
    subject, obj, predicate = spec.objects[relation.subject], spec.objects[relation.object], relation.predicate
    if rng.random() < 0.4:  # state it from the other side: "B right of A" is the same fact as "A left of B"
        subject, obj, predicate = obj, subject, INVERSE_RELATION[predicate]
    subject_group, object_group = (ObjectGroup(o.color, o.shape, o.size, 1) for o in (subject, obj))
    long_words, short_words = _Lexicon(rng), _Lexicon(rng, canonical=True)
    with_size = rng.random() < 0.5
    long_subject, long_object = (long_words.group(g, with_size, count_word="a") for g in (subject_group, object_group))
    long = rng.choice(_LONG_TEMPLATES["relation"]).format(
        subject=long_subject,
        Subject=_capitalize(long_subject),
        object=long_object,
        relation=rng.choice(RELATION_WORDS[predicate]),
        background=_background_phrase(spec.background, rng),
    )
    short_subject, short_object = (short_words.group(g, False, count_word="a") for g in (subject_group, object_group))
    short = f"{short_subject} {rng.choice(RELATION_WORDS[predicate][:2])} {short_object}"
    return Captions(long=long, short=short)


def _background_phrase(name: str, rng: random.Random) -> str:
    bg = BACKGROUNDS[name]
    noun = rng.choice(_BACKGROUND_NOUNS)
    if bg.direction == "none" and rng.random() < 0.5:
        return f"plain {bg.phrase} {noun}"
    return f"{bg.phrase} {noun}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _fix_article(phrase: str) -> str:
    if phrase.startswith("a ") and phrase[2:3] in tuple("aeiou"):
        return "an " + phrase[2:]
    return phrase


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
