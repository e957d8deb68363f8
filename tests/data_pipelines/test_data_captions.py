"""Captions of synthetic scenes: deterministic, varied, and faithful to the spec."""

import dataclasses
import re

from data_pipelines.synthetic import generate_scene, make_captions
from data_pipelines.synthetic.captions import COLOR_WORDS, COUNT_WORDS, RELATION_WORDS, SHAPE_WORDS

SCENES = [generate_scene(seed) for seed in range(200)]


def _skeleton(caption: str, spec) -> str:
    """The caption with content words replaced, leaving its phrasing template."""
    words = {w for o in spec.objects for w in (*COLOR_WORDS[o.color], *(s for pair in SHAPE_WORDS[o.shape] for s in pair))}
    for word in sorted(words, key=len, reverse=True):
        caption = re.sub(rf"\b{re.escape(word)}\b", "X", caption, flags=re.IGNORECASE)
    return caption


def test_captions_are_deterministic():
    for spec in SCENES[:50]:
        assert make_captions(spec) == make_captions(generate_scene(spec.seed))


def test_captions_vary_in_phrasing():
    captions = [make_captions(s) for s in SCENES]
    assert len({c.long for c in captions}) == len(SCENES)
    first_words = {" ".join(c.long.split()[:2]) for c in captions}
    assert len(first_words) >= 12
    skeletons = {_skeleton(c.long, s) for c, s in zip(captions, SCENES)}
    assert len(skeletons) >= 100
    # The same scene content with other seeds gets other phrasings.
    spec = SCENES[0]
    rephrased = {make_captions(dataclasses.replace(spec, seed=seed)).long for seed in range(30)}
    assert len(rephrased) >= 10
    text = " ".join(c.long + " " + c.short for c in captions)
    for words in RELATION_WORDS.values():
        assert sum(w in text for w in words) >= 2
    for word in ("two", "three", "four", "a pair of", "violet", "turquoise", "rhombus", "plus sign"):
        assert word in text


def test_short_captions_are_shorter():
    for spec in SCENES:
        c = make_captions(spec)
        assert 0 < len(c.short) < len(c.long)
        assert c.long[0].isupper() and c.long.endswith(".")


def test_captions_name_every_object_kind_and_its_count():
    for spec in SCENES:
        captions = make_captions(spec)
        for caption in (captions.long, captions.short):
            for group in spec.groups():
                assert any(w in caption for w in COLOR_WORDS[group.color]), (caption, group)
                shape_words = [pair[group.count > 1] for pair in SHAPE_WORDS[group.shape]]
                assert any(w in caption for w in shape_words), (caption, group)
                if group.count > 1 and spec.kind != "relation":
                    assert any(re.search(rf"\b{w}\b", caption, re.IGNORECASE) for w in COUNT_WORDS[group.count]), (caption, group)


def test_relation_captions_state_the_relation_either_way():
    inverted = 0
    for spec in (s for s in SCENES if s.relation):
        caption = make_captions(spec).long
        subject, obj = spec.objects[spec.relation.subject], spec.objects[spec.relation.object]
        first_subject = min(caption.find(w) for w in COLOR_WORDS[subject.color] if w in caption)
        first_object = min(caption.find(w) for w in COLOR_WORDS[obj.color] if w in caption)
        if subject.color == obj.color:
            continue
        stated = [p for p, words in RELATION_WORDS.items() if any(f" {w} " in caption for w in words)]
        assert stated, caption
        if first_subject > first_object:
            inverted += 1
    assert inverted > 0
