from __future__ import annotations

import math

import pytest
import torch

from infinity_train.geometry import num_tokens, scale_schedule
from infinity_train.tokenizer.ops import area_downsample, patchify_bits, unpatchify_bits, upsample
from infinity_train.tokenizer.quantizer import (
    MultiScaleBSQ,
    bits_to_latent,
    bsq,
    codes_from_bits,
    encode_bits,
    entropy_penalty,
    flatten_bits,
    parent_bit_dependence,
    schedule_for_grid,
    teacher_forcing_inputs,
)

from latent_helpers import multiscale_latent


@pytest.mark.parametrize("d", [8, 16, 32, 64])
def test_codes_have_magnitude_exactly_one_over_sqrt_d(d):
    residual = torch.randn(3, d, 4, 5)
    codes, bits, z = bsq(residual)
    assert torch.equal(codes.abs(), torch.full_like(codes, 1 / math.sqrt(d)))
    assert torch.equal(codes > 0, bits.permute(0, 3, 1, 2))
    assert torch.allclose(z.norm(dim=1), torch.ones(3, 4, 5))
    latent = bits_to_latent(encode_bits(residual, [(4, 5)]), [(4, 5)])
    assert torch.equal(latent.abs(), torch.full_like(latent, 1 / math.sqrt(d)))


def test_bits_round_trip_through_codes_and_patchify():
    bits = torch.rand(2, 4, 6, 16) > 0.5
    assert torch.equal(codes_from_bits(bits).permute(0, 2, 3, 1) > 0, bits)
    token_bits = patchify_bits(bits)
    assert token_bits.shape == (2, 2, 3, 64)
    assert torch.equal(unpatchify_bits(token_bits), bits)


def test_straight_through_gradient_is_the_normalized_residual_gradient():
    residual = torch.randn(2, 16, 3, 3, requires_grad=True)
    weights = torch.randn(2, 16, 3, 3)
    codes, _, _ = bsq(residual)
    (codes * weights).sum().backward()
    ste_grad = residual.grad.clone()
    residual.grad = None
    torch.nn.functional.normalize(residual, dim=1).mul(weights).sum().backward()
    assert torch.allclose(ste_grad, residual.grad)
    assert ste_grad.abs().sum() > 0


@pytest.mark.parametrize("h_div_w", [1.0, 1.333, 0.5])
@pytest.mark.parametrize("d", [16, 32])
def test_reconstruction_error_falls_with_every_scale(h_div_w, d):
    schedule = scale_schedule(256, h_div_w)
    latent = multiscale_latent(d, schedule, seed=1)
    bits = encode_bits(latent, schedule)
    errors = [latent.square().mean().item()]
    for k in range(1, len(schedule) + 1):
        errors.append((latent - bits_to_latent(bits[:k], schedule)).square().mean().item())
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]


def test_encode_bits_follows_the_residual_definition():
    schedule = scale_schedule(128, 1.0)
    latent = multiscale_latent(16, schedule)
    bits = encode_bits(latent, schedule)
    running = torch.zeros_like(latent)
    for k, grid in enumerate(schedule):
        residual = area_downsample(latent - running, grid)
        assert torch.equal(bits[k], (residual > 0).permute(0, 2, 3, 1))
        running = running + upsample(torch.where(residual > 0, 1.0, -1.0) / 4.0, schedule[-1])


@pytest.mark.parametrize("resolution, h_div_w", [(256, 1.0), (256, 0.75), (128, 2.0), (64, 0.333), (256, 2.5)])
def test_shapes_over_templates(resolution, h_div_w):
    schedule = scale_schedule(resolution, h_div_w)
    latent = torch.randn(2, 8, *schedule[-1])
    bits = encode_bits(latent, schedule)
    assert [tuple(b.shape) for b in bits] == [(2, h, w, 8) for h, w in schedule]
    assert all(b.dtype == torch.bool for b in bits)
    assert bits_to_latent(bits, schedule, schedule[-1]).shape == latent.shape
    assert flatten_bits(bits).shape == (2, num_tokens(schedule), 8)
    inputs = teacher_forcing_inputs(bits, schedule)
    h1, w1 = schedule[0]
    assert inputs.shape == (2, num_tokens(schedule) - h1 * w1, 8)


def test_teacher_forcing_inputs_are_resampled_running_sums():
    schedule = scale_schedule(64, 1.0)  # (1,1), (2,2), (4,4)
    latent = multiscale_latent(16, schedule)
    bits = encode_bits(latent, schedule)
    inputs = teacher_forcing_inputs(bits, schedule)
    first_code = codes_from_bits(bits[0])  # (B, d, 1, 1): its upsampled sum is constant
    assert torch.allclose(inputs[:, :4], first_code.flatten(2).transpose(1, 2).expand(-1, 4, -1))
    running = bits_to_latent(bits[:2], schedule)  # on the 4x4 grid = the last scale's grid
    assert torch.equal(inputs[:, 4:], running.flatten(2).transpose(1, 2))
    codes = [codes_from_bits(b) for b in bits]  # float codes are accepted as well as bits
    assert torch.equal(teacher_forcing_inputs(codes, schedule), inputs)


def test_schedule_errors_are_clear():
    latent = torch.randn(1, 16, 4, 4)
    with pytest.raises(ValueError, match=r"ends at \(8, 8\) but the latent grid is \(4, 4\)"):
        encode_bits(latent, scale_schedule(128, 1.0))
    with pytest.raises(ValueError, match="token grid 5x5 is not the last scale of any schedule"):
        schedule_for_grid((5, 5))
    assert schedule_for_grid((20, 15)) == scale_schedule(256, 1.333)
    bits = encode_bits(latent, scale_schedule(64, 1.0))
    with pytest.raises(ValueError, match="scale 1: expected"):
        teacher_forcing_inputs([bits[0], bits[2], bits[2]], scale_schedule(64, 1.0))
    with pytest.raises(ValueError, match="2 scales of codes for a schedule of 3"):
        teacher_forcing_inputs(bits[:2], scale_schedule(64, 1.0))


def test_multiscale_quantizer_matches_encode_bits_and_passes_gradients():
    schedule = scale_schedule(128, 1.0)
    latent = multiscale_latent(16, schedule).requires_grad_(True)
    out = MultiScaleBSQ(16)(latent, schedule)
    plain = encode_bits(latent, schedule)
    assert all(torch.equal(a, b) for a, b in zip(out.bits, plain))
    assert torch.equal(out.latent, bits_to_latent(plain, schedule))
    (out.latent * torch.randn_like(latent)).sum().add(out.commitment + out.entropy).backward()
    assert latent.grad is not None and torch.isfinite(latent.grad).all() and latent.grad.abs().sum() > 0


def test_reg_variant_drops_trailing_scales_and_returns_partial_sums():
    schedule = scale_schedule(128, 1.0)
    latent = multiscale_latent(16, schedule)
    quantizer = MultiScaleBSQ(16, drop_trailing_prob=1.0, num_partial_scales=2).train()
    generator = torch.Generator().manual_seed(0)
    used_counts = set()
    for _ in range(10):
        out = quantizer(latent, schedule, generator)
        used_counts.add(out.num_scales_used)
        assert 1 <= out.num_scales_used < len(schedule)
        assert torch.equal(out.latent, bits_to_latent(out.bits, schedule))
        for k, partial in out.partial_latents.items():
            assert k < out.num_scales_used - 1
            assert torch.equal(partial, bits_to_latent(out.bits[: k + 1], schedule))
    assert len(used_counts) > 1
    evaluated = quantizer.eval()(latent, schedule, generator)
    assert evaluated.num_scales_used == len(schedule) and not evaluated.partial_latents


def test_entropy_penalty_prefers_confident_and_diverse_bits():
    torch.manual_seed(0)
    diverse = torch.nn.functional.normalize(torch.randn(8, 16, 4, 4), dim=1)
    collapsed = diverse[:1, :, :1, :1].expand(8, 16, 4, 4).contiguous()
    uncertain = diverse * 1e-3
    assert entropy_penalty(diverse) < entropy_penalty(collapsed)
    assert entropy_penalty(diverse) < entropy_penalty(uncertain)
    z = diverse.clone().requires_grad_(True)
    entropy_penalty(z).backward()
    assert torch.isfinite(z.grad).all()


def test_bit_index_uses_the_reference_bit_order():
    quantizer = MultiScaleBSQ(8)
    bits = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert quantizer.lfq.bits_to_index(bits).item() == 129
    with pytest.raises(ValueError, match="overflow"):
        MultiScaleBSQ(64).lfq.bits_to_index(torch.zeros(1, 64, dtype=torch.bool))


def test_a_latent_far_above_the_code_norm_stops_being_residual():
    """With |F| >> 1 subtracting unit codes hardly changes the residual: each scale's bits are just the
    signs of the downsampled latent, and a latent with a constant sign pattern carries only d bits."""
    schedule = scale_schedule(128, 1.0)
    latent = multiscale_latent(16, schedule, batch=8, token_norm=1.0)

    def signs_of_downsampled(x):
        return [(area_downsample(x, grid) > 0).permute(0, 2, 3, 1) for grid in schedule]

    def agreement(a, b):
        return torch.stack([(x == y).float().mean() for x, y in zip(a[1:], b[1:])]).mean()

    assert agreement(encode_bits(latent, schedule), signs_of_downsampled(latent)) < 0.8
    assert agreement(encode_bits(1000.0 * latent, schedule), signs_of_downsampled(latent)) > 0.99
    offset = latent + 10.0 * torch.randn(8, 16, 1, 1, generator=torch.Generator().manual_seed(1)).sign()
    assert torch.equal(parent_bit_dependence(encode_bits(offset, schedule)), torch.ones(len(schedule) - 1))


def test_a_latent_that_the_first_code_matches_leaves_the_last_scale_negating_its_parent():
    schedule = ((1, 1), (2, 2), (4, 4))
    generator = torch.Generator().manual_seed(0)
    first = codes_from_bits(torch.rand(8, 1, 1, 16, generator=generator) > 0.5)
    latent = upsample(first, (4, 4)) + 0.05 * torch.randn(8, 16, 4, 4, generator=generator)
    dependence = parent_bit_dependence(encode_bits(latent, schedule))
    assert dependence[0] < 0.3  # scale 2 reads the small deviations
    assert dependence[1] > 0.95  # scale 3 only undoes scale 2's overshoot
    with pytest.raises(ValueError, match="at least two scales"):
        parent_bit_dependence(encode_bits(latent, schedule)[:1])
