"""The GenEval-style checker: accurate on ground truth, at chance on mismatched specs, 0 on blanks."""

import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageFilter

from data_pipelines.synthetic import CRITERIA, CheckerTally, check, detect, generate_scene, oracle_check, render_scene
from data_pipelines.synthetic.checker import classify_shape
from data_pipelines.synthetic.geometry import coverage, place
from data_pipelines.synthetic.palette import SHAPES
from infinity_train.geometry import ASPECT_RATIOS, pixel_size

NON_SQUARE = [a for a in ASPECT_RATIOS if a != 1.0]


def _accuracy(pairs, resolution, degrade=lambda image: image) -> dict:
    tally = CheckerTally()
    for spec, h_div_w in pairs:
        tally.add(check(spec, degrade(render_scene(spec, resolution, h_div_w))), spec.kind)
    return tally.accuracy()


@pytest.mark.parametrize(
    "resolution, aspect_ratios, count",
    [(64, [1.0], 200), (128, [1.0], 200), (128, NON_SQUARE, 140), (64, NON_SQUARE, 140)],
    ids=["64-square", "128-square", "128-non-square", "64-non-square"],
)
def test_ground_truth_scores_at_least_0_99(resolution, aspect_ratios, count):
    pairs = [(generate_scene(10_000 + i), a) for i, a in zip(range(count), itertools.cycle(aspect_ratios))]
    accuracy = _accuracy(pairs, resolution)
    assert accuracy["overall"] >= 0.99, accuracy
    for criterion in CRITERIA:
        assert accuracy[criterion] >= 0.99, accuracy


def test_mismatched_specs_score_at_or_below_chance():
    """Chance = how often a random scene really satisfies another random spec (symbolic oracle, no pixels)."""
    count = 300
    specs = [generate_scene(20_000 + i) for i in range(count)]
    scenes = [generate_scene(30_000 + i) for i in range(count)]
    pixel, chance = CheckerTally(), CheckerTally()
    for spec, scene in zip(specs, scenes):
        pixel.add(check(spec, render_scene(scene, 64)), spec.kind)
        chance.add(oracle_check(spec, scene, 64, 64), spec.kind)
    measured, expected = pixel.accuracy(), chance.accuracy()
    assert expected["overall"] < 0.03  # 6 shapes x 8 colors: a random scene rarely matches
    for key in measured:
        assert measured[key] <= expected[key] + 0.02, (key, measured, expected)


@pytest.mark.parametrize("gray", [0, 52, 140, 214, 255])
def test_blank_image_scores_zero(gray):
    blank = Image.new("RGB", (64, 64), (gray, gray, gray))
    for spec in (generate_scene(i) for i in range(50)):
        result = check(spec, blank)
        assert result["overall"] == 0.0 and result["num_detections"] == 0
        assert result["object"] == result["color"] == result["count"] == 0.0


def test_gray_noise_and_gradients_detect_nothing():
    rng = np.random.default_rng(0)
    noise = np.clip(128 + rng.normal(0, 12, (128, 128, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    gradient = np.linspace(0, 255, 128).astype(np.uint8)[None, :, None].repeat(128, axis=0).repeat(3, axis=2)
    assert detect(noise) == [] and detect(gradient) == []


def _jpeg(image, quality=75):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)  # default 4:2:0 chroma, as most tools write
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _noisy(image):
    rng = np.random.default_rng(1)
    return Image.fromarray(np.clip(np.asarray(image) + rng.normal(0, 8, (image.height, image.width, 3)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "degrade",
    [_jpeg, _noisy, lambda image: image.filter(ImageFilter.GaussianBlur(1.0))],
    ids=["jpeg75", "noise8", "blur1"],
)
def test_tolerates_generated_image_artifacts_at_128(degrade):
    pairs = [(generate_scene(40_000 + i), 1.0) for i in range(80)]
    assert _accuracy(pairs, 128, degrade)["overall"] >= 0.95


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_classifier_recovers_tiny_and_stretched_shapes(shape):
    for half_extent, stretch in ((3.0, 1.0), (5.5, 1.0), (20.0, 1.0), (12.0, 1.3)):
        size = int(4 * half_extent * stretch) + 8
        points = [(x, size / 2 + (y - size / 2) * stretch) for x, y in place(shape, size / 2, size / 2, half_extent)]
        predicted, iou = classify_shape(coverage(points, size, size))
        assert predicted == shape, (shape, half_extent, stretch, predicted, iou)


def test_check_reports_each_criterion():
    spec = next(s for s in (generate_scene(i) for i in range(100)) if s.relation is not None)
    result = check(spec, render_scene(spec, 128))
    assert set(result) == {*CRITERIA, "overall", "num_detections"}
    assert result["overall"] == 1.0 and result["num_detections"] == 2
    non_relation = next(s for s in (generate_scene(i) for i in range(100)) if s.relation is None)
    assert check(non_relation, render_scene(non_relation, 128))["position"] is None


def test_swapped_relation_fails_position_only():
    spec = next(s for s in (generate_scene(i) for i in range(100)) if s.relation is not None)
    image = render_scene(spec, 128)
    relation = spec.relation
    swapped = type(spec)(spec.seed, spec.kind, spec.background, spec.objects, type(relation)(relation.object, relation.predicate, relation.subject))
    result = check(swapped, image)
    assert result["position"] == 0.0 and result["object"] == result["color"] == result["count"] == 1.0
    assert result["overall"] == 0.0


def test_wrong_count_fails_count_only():
    spec = next(s for s in (generate_scene(i) for i in range(100)) if s.kind == "counting")
    fewer = type(spec)(spec.seed, spec.kind, spec.background, spec.objects[:-1])
    result = check(fewer, render_scene(spec, 128))
    assert result["count"] == 0.0 and result["object"] == result["color"] == 1.0


def test_checker_works_at_1024_for_a_non_square_template():
    spec = generate_scene(3)
    height, width = pixel_size(1024, 0.5)
    image = render_scene(spec, 1024, 0.5)
    assert image.size == (width, height)
    assert check(spec, image)["overall"] == 1.0
