"""Generation works on every aspect template, and the per-bit top-k / top-p settings behave as documented."""

from __future__ import annotations

import pytest
import torch

from infinity_train.models.layout import scale_offsets
from infinity_train.models.sampling import generate_bits, sample_bits
from infinity_train.tokenizer import teacher_forcing_inputs
from infinity_train.text.packed import PackedText
from infinity_train.geometry import ASPECT_RATIOS, pixel_size, scale_schedule

CFG = 3.0


@torch.no_grad()
@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
def test_every_template_generates_its_grids_with_cache_parity(make_model, make_text, aspect):
    schedule = scale_schedule(128, aspect)
    model = make_model(depth=1)
    text = make_text([2, 3])
    generated = generate_bits(model, text, schedule, cfg=CFG, generator=0, return_logits=True)
    assert [tuple(b.shape[1:3]) for b in generated.bits] == list(schedule)
    assert tuple(generated.latent.shape[-2:]) == tuple(s // 16 for s in pixel_size(128, aspect))

    inputs = teacher_forcing_inputs(generated.bits, schedule)
    doubled = model(torch.cat((inputs, inputs)), PackedText.cat([text, text]), schedule, uncond_mask=torch.tensor([False, False, True, True]))
    expected = CFG * doubled[:2] + (1 - CFG) * doubled[2:]
    offsets = scale_offsets(schedule)
    for k, logits in enumerate(generated.logits):
        assert (logits - expected[:, offsets[k] : offsets[k + 1]]).abs().max().item() < 1e-5, f"scale {k}"


def test_top_k_two_and_top_p_one_keep_both_values():
    logits = torch.randn(500, 8, 2, generator=torch.Generator().manual_seed(0))
    plain = sample_bits(logits, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_bits(logits, top_k=2, generator=torch.Generator().manual_seed(1)), plain)
    assert torch.equal(sample_bits(logits, top_p=1.0, generator=torch.Generator().manual_seed(1)), plain)
    assert not torch.equal(plain, logits.argmax(-1).bool())  # sampling, not greedy


def test_top_p_drops_exactly_the_unlikely_values_per_bit():
    prob_one = torch.tensor([0.02, 0.15, 0.5, 0.85, 0.98]).expand(2000, 5)
    logits = torch.stack((torch.log1p(-prob_one), torch.log(prob_one)), dim=-1)
    rate = sample_bits(logits, top_p=0.8, generator=torch.Generator().manual_seed(2)).float().mean(0)
    assert rate[0].item() == 0.0 and rate[1].item() == 0.0  # p(1) <= 0.2: the value 1 is dropped
    assert rate[3].item() == 1.0 and rate[4].item() == 1.0  # p(0) <= 0.2: the value 0 is dropped
    assert rate[2].item() == pytest.approx(0.5, abs=0.05)


def test_top_k_one_wins_over_top_p():
    logits = torch.randn(300, 4, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_bits(logits, top_k=1, top_p=0.99), logits.argmax(-1).bool())


@pytest.mark.parametrize("settings", [{"top_k": -1}, {"top_p": 1.5}, {"top_p": -0.1}, {"tau": 0.0}])
def test_invalid_sampling_settings_are_refused(make_model, make_text, settings):
    with pytest.raises(ValueError, match="top_k|top_p|tau"):
        generate_bits(make_model(depth=1), make_text([2]), scale_schedule(64, 1.0), generator=0, **settings)
