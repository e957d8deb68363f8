"""Scene specs, layouts and rendering of the synthetic dataset."""

import colorsys
import itertools

import numpy as np
import pytest

from data_pipelines.synthetic import BACKGROUNDS, COLORS, SCENE_KINDS, SHAPES, SceneSpec, generate_scene, oracle_check, render_scene
from data_pipelines.synthetic.palette import MAX_OBJECTS
from data_pipelines.synthetic.render import object_outline
from infinity_train.geometry import ASPECT_RATIOS, pixel_size

SCENES = [generate_scene(seed) for seed in range(300)]


def test_spec_json_round_trip():
    for spec in SCENES[:50]:
        text = spec.to_json()
        assert SceneSpec.from_json(text) == spec
        assert SceneSpec.from_json(text).to_json() == text
        assert SceneSpec.from_dict(spec.to_dict()) == spec


def test_invalid_spec_is_rejected():
    data = SCENES[0].to_dict()
    data["objects"][0]["color"] = "chartreuse"
    with pytest.raises(ValueError, match="unknown shape/color/size"):
        SceneSpec.from_dict(data)


def test_same_seed_same_scene_and_pixels_different_seed_differs():
    assert generate_scene(7) == generate_scene(7)
    assert render_scene(generate_scene(7), 64).tobytes() == render_scene(generate_scene(7), 64).tobytes()
    assert generate_scene(7) != generate_scene(8)
    assert render_scene(generate_scene(7), 64).tobytes() != render_scene(generate_scene(8), 64).tobytes()


def test_scenes_cover_the_vocabulary():
    assert {s.kind for s in SCENES} == set(SCENE_KINDS)
    assert {s.background for s in SCENES} == set(BACKGROUNDS)
    assert {o.shape for s in SCENES for o in s.objects} == set(SHAPES)
    assert {o.color for s in SCENES for o in s.objects} == set(COLORS)
    assert {len(s.objects) for s in SCENES} == set(range(1, MAX_OBJECTS + 1))
    assert {g.count for s in SCENES if s.kind == "counting" for g in s.groups()} == {2, 3, 4}
    assert {s.relation.predicate for s in SCENES if s.relation} == {"left of", "right of", "above", "below"}
    for spec in SCENES:
        if spec.kind in ("pair", "relation"):
            kinds = [(g.color, g.shape) for g in spec.groups()]
            assert len(kinds) == 2 and kinds[0] != kinds[1]


def test_palette_is_separated_and_backgrounds_are_neutral():
    hues = sorted(c.hue for c in COLORS.values())
    gaps = [b - a for a, b in zip(hues, hues[1:])] + [hues[0] + 360 - hues[-1]]
    assert len(COLORS) >= 8 and min(gaps) >= 25
    assert min(c.chroma for c in COLORS.values()) >= 140
    for bg in BACKGROUNDS.values():
        for level in (bg.start_gray, bg.end_gray):
            assert colorsys.rgb_to_hsv(level, level, level)[1] == 0


@pytest.mark.parametrize("h_div_w", ASPECT_RATIOS)
def test_every_template_renders_at_its_pixel_size_with_a_valid_layout(h_div_w):
    for resolution in (64, 128):
        height, width = pixel_size(resolution, h_div_w)
        for spec in SCENES[:40]:
            # A perfect detector accepts the spec's own layout: objects inside, apart, relations true.
            assert oracle_check(spec, spec, height, width)["overall"] == 1.0
            for obj in spec.objects:
                xs, ys = zip(*object_outline(obj, height, width))
                assert min(xs) >= 0 and min(ys) >= 0 and max(xs) <= width and max(ys) <= height
        image = render_scene(SCENES[0], resolution, h_div_w)
        assert (image.height, image.width) == (height, width) and image.mode == "RGB"


@pytest.mark.parametrize("h_div_w", [1.0, 0.333, 2.0])
def test_renders_at_1024(h_div_w):
    image = render_scene(SCENES[1], 1024, h_div_w)
    assert (image.height, image.width) == pixel_size(1024, h_div_w)


def test_objects_do_not_overlap_in_pixels():
    for spec, h_div_w in zip(SCENES[:60], itertools.cycle(ASPECT_RATIOS)):
        height, width = pixel_size(128, h_div_w)
        boxes = []
        for obj in spec.objects:
            xs, ys = zip(*object_outline(obj, height, width))
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
        for a, b in itertools.combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_render_is_antialiased_and_uses_palette_colors():
    spec = next(s for s in SCENES if s.background == "white")
    pixels = np.asarray(render_scene(spec, 128)).reshape(-1, 3)
    colors = {tuple(p) for p in pixels}
    for obj in spec.objects:
        assert COLORS[obj.color].rgb in colors
    assert len(colors) > len(spec.objects) + 1  # edge pixels blend object and background
