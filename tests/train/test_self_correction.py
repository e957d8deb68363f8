from __future__ import annotations

import pytest
import torch

from infinity_train.geometry import num_tokens, scale_schedule
from infinity_train.tokenizer.ops import area_downsample, upsample
from infinity_train.tokenizer.quantizer import codes_from_bits, encode_bits, flatten_bits, teacher_forcing_inputs
from infinity_train.train.self_correction import bitwise_self_correction

from latent_helpers import multiscale_latent

SCHEDULE = scale_schedule(256, 1.0)  # 7 scales, 16x16 latent grid


def _run(latent, max_strength, seed=0, **kwargs):
    return bitwise_self_correction(latent, SCHEDULE, max_strength, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_zero_strength_is_plain_teacher_forcing():
    latent = multiscale_latent(16, SCHEDULE, batch=3)
    batch = _run(latent, 0.0)
    plain = encode_bits(latent, SCHEDULE)
    assert all(torch.equal(a, b) for a, b in zip(batch.labels, plain))
    assert all(torch.equal(a, b) for a, b in zip(batch.corrupted_bits, plain))
    assert torch.equal(batch.inputs, teacher_forcing_inputs(plain, SCHEDULE))
    assert torch.equal(batch.flat_labels, flatten_bits(plain))
    assert batch.flat_labels.shape == (3, num_tokens(SCHEDULE), 16)
    assert not batch.strengths.any()


def test_one_strength_per_scale_for_the_whole_batch_by_default():
    """The release draws np.random.randint(0, 100 p + 1) * 0.01 once per scale for the batch."""
    latent = multiscale_latent(8, SCHEDULE, batch=16)
    strengths = _run(latent, 0.3).strengths
    assert strengths.shape == (16, len(SCHEDULE))
    assert torch.equal(strengths, strengths[:1].expand_as(strengths))


def test_requant_off_sums_clean_codes_as_the_release_noise_apply_requant_0():
    latent = multiscale_latent(8, SCHEDULE, batch=4)
    plain = _run(latent, 0.0)
    flipped_but_ignored = _run(latent, 0.3, requant=False)
    assert torch.equal(flipped_but_ignored.inputs, plain.inputs)
    assert all(torch.equal(a, b) for a, b in zip(flipped_but_ignored.labels, plain.labels))
    assert not torch.equal(_run(latent, 0.3).inputs, plain.inputs)


def test_strengths_lie_on_the_hundredths_grid_up_to_p():
    latent = multiscale_latent(8, SCHEDULE, batch=64)
    strengths = _run(latent, 0.3, per_sample_strength=True).strengths
    assert strengths.shape == (64, len(SCHEDULE))
    hundredths = strengths * 100
    assert torch.allclose(hundredths, hundredths.round(), atol=1e-4)
    assert strengths.min() >= 0 and strengths.max() <= 0.3 + 1e-6
    assert len(torch.unique(hundredths.round())) > 15  # many distinct values drawn


def test_empirical_flip_rate_matches_the_drawn_strength():
    latent = multiscale_latent(32, SCHEDULE, batch=16)
    batch = _run(latent, 0.3)
    for k, (labels, corrupted) in enumerate(zip(batch.labels, batch.corrupted_bits)):
        bits_per_sample = labels[0].numel()
        flips = (labels ^ corrupted).flatten(1).sum(dim=1).float()
        s = batch.strengths[:, k]
        expected = s * bits_per_sample
        std = (bits_per_sample * s * (1 - s)).sqrt()
        assert (flips[s == 0] == 0).all()
        assert ((flips - expected).abs() <= 5 * std + 1).all(), (k, flips, expected)
        total_std = std.square().sum().sqrt()
        assert abs(flips.sum() - expected.sum()) <= 4 * total_std + 1


def test_labels_are_re_derived_from_the_corrupted_running_sum():
    latent = multiscale_latent(16, SCHEDULE, batch=4)
    batch = _run(latent, 0.3, seed=3)
    running = torch.zeros_like(latent)
    for k, grid in enumerate(SCHEDULE):
        requantized = area_downsample(latent - running, grid) > 0
        assert torch.equal(batch.labels[k], requantized.permute(0, 2, 3, 1))
        running = running + upsample(codes_from_bits(batch.corrupted_bits[k]), SCHEDULE[-1])
    assert torch.equal(batch.inputs, teacher_forcing_inputs(batch.corrupted_bits, SCHEDULE))
    plain = encode_bits(latent, SCHEDULE)
    assert torch.equal(batch.labels[0], plain[0])  # nothing precedes the first scale
    changed = [k for k in range(1, len(SCHEDULE)) if not torch.equal(batch.labels[k], plain[k])]
    assert changed, "flipped early bits must change the labels of later scales"


def test_only_the_first_num_scales_are_corrupted():
    latent = multiscale_latent(16, SCHEDULE, batch=4)
    batch = _run(latent, 0.3, num_scales=2)
    assert batch.strengths.shape == (4, 2)
    for labels, corrupted in zip(batch.labels[2:], batch.corrupted_bits[2:]):
        assert torch.equal(labels, corrupted)


def test_generator_makes_it_reproducible():
    latent = multiscale_latent(16, SCHEDULE, batch=2)
    first, again, other = _run(latent, 0.3, seed=5), _run(latent, 0.3, seed=5), _run(latent, 0.3, seed=6)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.flat_labels, again.flat_labels)
    assert not torch.equal(first.inputs, other.inputs)


def test_patchified_tokens_have_four_times_the_bits():
    token_schedule = scale_schedule(64, 1.0)
    latent = multiscale_latent(8, [(2 * h, 2 * w) for h, w in token_schedule], batch=2)
    batch = bitwise_self_correction(latent, token_schedule, 0.0, patchify=True)
    assert [tuple(b.shape) for b in batch.labels] == [(2, h, w, 32) for h, w in token_schedule]
    assert batch.inputs.shape == (2, num_tokens(token_schedule) - 1, 32)


def test_invalid_strength_is_refused():
    with pytest.raises(ValueError, match="max flip strength"):
        _run(multiscale_latent(8, SCHEDULE), 1.5)
