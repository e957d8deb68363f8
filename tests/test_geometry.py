import pytest

from infinity_train import geometry


@pytest.mark.parametrize("resolution, tokens, n", [(256, 521, 7), (512, 2521, 10), (768, 6425, 12), (1024, 10521, 13), (64, 21, 3), (128, 121, 5)])
def test_square_schedule_token_counts(resolution, tokens, n):
    schedule = geometry.scale_schedule(resolution)
    assert len(schedule) == n
    assert geometry.num_tokens(schedule) == tokens
    assert schedule[-1] == (resolution // 16, resolution // 16)


def test_fifteen_templates_with_matching_final_aspect():
    assert len(geometry.ASPECT_RATIOS) == 15
    for ratio in geometry.ASPECT_RATIOS:
        for resolution in (256, 512, 768, 1024):
            h, w = geometry.scale_schedule(resolution, ratio)[-1]
            assert abs(h / w - ratio) < 0.01 * max(ratio, 1 / ratio)
            assert geometry.scale_schedule(resolution, ratio)[0] == (1, 1)


def test_portrait_templates_are_transposes():
    assert geometry.scale_schedule(1024, 0.5) == tuple((w, h) for h, w in geometry.scale_schedule(1024, 2.0))
    assert geometry.pixel_size(256, 0.5) == (176, 352)


@pytest.mark.parametrize("h_div_w, template", [(1.0, 1.0), (1.1, 1.0), (1.2, 1.25), (1.4, 1.333), (0.52, 0.5), (10.0, 3.0), (0.01, 0.333)])
def test_nearest_template(h_div_w, template):
    assert geometry.nearest_template(h_div_w) == template


@pytest.mark.parametrize("bad", [100, 0, 2048, 48])
def test_unsupported_resolution_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=f"resolution {bad} does not end on a scale"):
        geometry.scale_schedule(bad)


def test_bad_aspect_inputs():
    with pytest.raises(ValueError, match="not an aspect template"):
        geometry.scale_schedule(256, 1.1)
    with pytest.raises(ValueError, match="positive"):
        geometry.nearest_template(-1.0)


def test_attended_pairs_matches_explicit_block_causal_mask():
    schedule = geometry.scale_schedule(128, 1.5)
    scale_of = [k for k, (h, w) in enumerate(schedule) for _ in range(h * w)]
    explicit = sum(1 for q in scale_of for k in scale_of if k <= q)
    assert geometry.attended_pairs(schedule) == explicit
