"""KV-cached incremental inference equals recomputing the sequence; sampling controls behave as documented."""

from __future__ import annotations

import pytest
import torch

from infinity_train.models.layout import scale_offsets
from infinity_train.models.rope import rope_reference_grid
from infinity_train.models.sampling import generate_bits, sample_bits
from infinity_train.tokenizer import teacher_forcing_inputs
from infinity_train.text.packed import PackedText
from infinity_train.geometry import scale_schedule

SCHEDULE = scale_schedule(128, 0.667)  # (1,1) (2,2) (2,3) (4,6) (6,9): non-square, 89 tokens
ATOL = 1e-5


def cached_logits(model, inputs, text, schedule, **cache_kwargs):
    cache = model.new_cache(text, **cache_kwargs)
    offsets = scale_offsets(schedule)
    out = []
    for k in range(len(schedule)):
        x_k = None if k == 0 else inputs[:, offsets[k] - 1 : offsets[k + 1] - 1]
        out.append(model.forward_scale(x_k, k, schedule, cache))
    return out


@torch.no_grad()
@pytest.mark.parametrize("uncond", [None, "half"])
def test_forward_scale_matches_full_forward_and_prefix_recompute(make_model, make_text, make_inputs, uncond):
    model = make_model()
    text, inputs = make_text([3, 1, 5]), make_inputs(3, SCHEDULE, 8)
    mask = torch.tensor([False, True, False]) if uncond else None
    offsets = scale_offsets(SCHEDULE)
    full = model(inputs, text, SCHEDULE, uncond_mask=mask)
    grid = rope_reference_grid(SCHEDULE)
    for k, logits in enumerate(cached_logits(model, inputs, text, SCHEDULE, uncond_mask=mask)):
        assert (logits - full[:, offsets[k] : offsets[k + 1]]).abs().max().item() < ATOL
        prefix = model(inputs[:, : offsets[k + 1] - 1], text, SCHEDULE[: k + 1], uncond_mask=mask, rope_grid=grid)
        assert (logits - prefix[:, offsets[k] :]).abs().max().item() < ATOL


@torch.no_grad()
@pytest.mark.parametrize("cfg", [1.0, 3.0, [4.0, 3.0, 2.0, 1.5, 1.0]])
def test_generation_logits_match_recomputing_the_full_sequence(make_model, make_text, cfg):
    model = make_model()
    text = make_text([2, 4])
    generated = generate_bits(model, text, SCHEDULE, cfg=cfg, tau=0.8, generator=7, return_logits=True)
    assert [tuple(b.shape) for b in generated.bits] == [(2, h, w, 8) for h, w in SCHEDULE]
    assert all(b.dtype == torch.bool for b in generated.bits)

    inputs = teacher_forcing_inputs(generated.bits, SCHEDULE)
    cfgs = [cfg] * len(SCHEDULE) if isinstance(cfg, float) else cfg
    if cfg == 1.0:
        recomputed = model(inputs, text, SCHEDULE)
    else:
        doubled = model(torch.cat((inputs, inputs)), PackedText.cat([text, text]), SCHEDULE, uncond_mask=torch.tensor([False, False, True, True]))
        recomputed = doubled[:2], doubled[2:]
    offsets = scale_offsets(SCHEDULE)
    for k, logits in enumerate(generated.logits):
        span = slice(offsets[k], offsets[k + 1])
        expected = recomputed[:, span] if cfg == 1.0 else cfgs[k] * recomputed[0][:, span] + (1 - cfgs[k]) * recomputed[1][:, span]
        err = (logits - expected / 0.8).abs().max().item()  # returned after 1/tau, as the release guides them
        assert err < ATOL, f"scale {k}: {err:.2e}"


@torch.no_grad()
def test_latent_is_the_sum_of_upsampled_codes(make_model, make_text):
    from infinity_train.tokenizer.ops import bits_to_codes, upsample

    model = make_model()
    generated = generate_bits(model, make_text([3]), SCHEDULE, cfg=2.0, generator=0)
    expected = sum(upsample(bits_to_codes(b).permute(0, 3, 1, 2), SCHEDULE[-1]) for b in generated.bits)
    assert generated.latent.shape == (1, 8, 6, 9)
    assert torch.allclose(generated.latent, expected, atol=1e-6)


def test_generation_is_seeded_and_restores_training_mode(make_model, make_text):
    model = make_model().train()
    text = make_text([2, 3])
    first = generate_bits(model, text, SCHEDULE, cfg=3.0, generator=11)
    again = generate_bits(model, text, SCHEDULE, cfg=3.0, generator=torch.Generator().manual_seed(11))
    other = generate_bits(model, text, SCHEDULE, cfg=3.0, generator=12)
    assert all(torch.equal(a, b) for a, b in zip(first.bits, again.bits))
    assert not all(torch.equal(a, b) for a, b in zip(first.bits, other.bits))
    assert model.training


@torch.no_grad()
def test_top_k_one_is_greedy_on_guided_logits(make_model, make_text):
    model = make_model()
    generated = generate_bits(model, make_text([4]), SCHEDULE, cfg=2.5, tau=2.0, top_k=1, generator=3, return_logits=True)
    for bits, logits in zip(generated.bits, generated.logits):
        assert torch.equal(bits.flatten(1, 2), logits.argmax(-1).bool())


def test_per_bit_top_p_and_temperature_on_two_way_distributions():
    logits = torch.log(torch.tensor([[0.95, 0.05], [0.3, 0.7]])).expand(4000, 2, 2)
    g = torch.Generator().manual_seed(0)
    plain = sample_bits(logits, generator=g).float().mean(0)
    assert plain[0].item() == pytest.approx(0.05, abs=0.02) and plain[1].item() == pytest.approx(0.7, abs=0.03)
    nucleus = sample_bits(logits, top_p=0.9, generator=g).float().mean(0)
    assert nucleus[0].item() == 0.0  # p(1) = 0.05 <= 1 - 0.9: dropped
    assert nucleus[1].item() == pytest.approx(0.7, abs=0.03)  # p(0) = 0.3 > 0.1: both kept
    cold = sample_bits(logits / 0.25, generator=g).float().mean(0)
    assert cold[1].item() > 0.9


def test_scales_must_be_fed_in_order(make_model, make_text):
    model = make_model()
    cache = model.new_cache(make_text([2]))
    with torch.no_grad(), pytest.raises(ValueError, match="cache holds scales"):
        model.forward_scale(torch.zeros(1, 4, 8), 1, SCHEDULE, cache)
