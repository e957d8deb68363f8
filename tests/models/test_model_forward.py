"""Forward behaviour: block-causality, non-square schedules, caption dropout, initialization statistics."""

from __future__ import annotations

import math

import pytest
import torch

from infinity_train.models.blocks import ADALN_CHUNKS
from infinity_train.models.layout import scale_offsets
from infinity_train.models.loss import bitwise_loss
from infinity_train.geometry import scale_schedule

NON_SQUARE = scale_schedule(128, 1.5)  # (1,1) (2,2) (3,2) (6,4) (9,6): 89 tokens


@pytest.mark.parametrize("perturbed_scale", [1, 2, 3])
def test_block_causal_perturbing_scale_k_leaves_earlier_scales_unchanged(make_model, make_text, make_inputs, perturbed_scale):
    model = make_model()
    text, inputs = make_text([3, 4]), make_inputs(2, NON_SQUARE, 8)
    offsets = scale_offsets(NON_SQUARE)
    changed = inputs.clone()
    # token t of the sequence (t >= 1) is input row t - 1
    changed[:, offsets[perturbed_scale] - 1 : offsets[perturbed_scale + 1] - 1] += 1.0
    with torch.no_grad():
        before, after = model(inputs, text, NON_SQUARE), model(changed, text, NON_SQUARE)
    diff = (before - after).abs().amax(dim=(0, 2, 3))  # per token
    start = offsets[perturbed_scale]
    assert diff[:start].max().item() <= 1e-6
    assert diff[start : offsets[perturbed_scale + 1]].min().item() > 1e-4  # the scale itself sees its inputs
    if perturbed_scale + 1 < len(NON_SQUARE):
        assert diff[offsets[perturbed_scale + 1] :].min().item() > 1e-4  # and later scales see it too


def test_forward_backward_on_non_square_template(make_model, make_text, make_inputs):
    model = make_model(randomize=False).train()
    text, inputs = make_text([2, 6, 1]), make_inputs(3, NON_SQUARE, 8)
    logits = model(inputs, text, NON_SQUARE, uncond_mask=torch.tensor([False, True, False]))
    assert logits.shape == (3, 89, 8, 2)
    labels = torch.rand(3, 89, 8, generator=torch.Generator().manual_seed(0)) > 0.5
    result = bitwise_loss(logits, labels, NON_SQUARE)
    result.loss.backward()
    assert math.isfinite(result.loss.item())
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().max() == 0]
    assert not zero


def test_schedule_and_input_validation(make_model, make_text, make_inputs):
    model = make_model()
    text = make_text([2])
    with pytest.raises(ValueError, match="bits_input must be"):
        model(make_inputs(1, NON_SQUARE, 8)[:, :-1], text, NON_SQUARE)
    with pytest.raises(ValueError, match="first scale must be"):
        model(torch.zeros(1, 3, 8), text, ((2, 2),))
    with pytest.raises(ValueError, match="at most 15"):
        model(torch.zeros(1, 15, 8), text, ((1, 1),) * 16)


def test_forced_uncond_keeps_only_the_caption_length_and_matches_full_dropout(make_model, make_text, make_inputs):
    """As in the release, the unconditional text of a caption of n tokens is the first n learned rows:
    the caption's content no longer matters, its length still does."""
    model = make_model()
    schedule = ((1, 1), (2, 2))
    inputs = make_inputs(2, schedule, 8)
    with torch.no_grad():
        a = model(inputs, make_text([4, 1], seed=5), schedule, force_uncond=True)
        b = model(inputs, make_text([4, 1], seed=6), schedule, force_uncond=True)
        other_lengths = model(inputs, make_text([2, 3], seed=6), schedule, force_uncond=True)
        masked = model(inputs, make_text([4, 1], seed=6), schedule, uncond_mask=torch.tensor([True, False]))
        conditional = model(inputs, make_text([4, 1], seed=6), schedule)
        model.cond_drop = 1.0
        model.train()
        dropped = model(inputs, make_text([4, 1], seed=6), schedule)
    assert torch.equal(a, b)
    assert (other_lengths - a).abs().max() > 1e-3
    assert torch.allclose(dropped, a, atol=1e-6)
    assert torch.allclose(masked[0], a[0], atol=1e-6) and torch.allclose(masked[1], conditional[1], atol=1e-6)
    assert (conditional - a).abs().max() > 1e-3


def test_caption_longer_than_the_unconditional_text_is_refused(make_model, make_text, make_inputs):
    model = make_model()  # TEXT_MAX_LEN = 6 rows of unconditional text
    schedule = ((1, 1), (2, 2))
    with pytest.raises(ValueError, match="more tokens than the 6 rows"):
        model(make_inputs(1, schedule, 8), make_text([7]), schedule, force_uncond=True)


def test_caption_dropout_rate_in_training(make_model):
    from infinity_train.models.infinity import InfinityTransformer

    model = InfinityTransformer(64, 1, 1, 8, 32, 6, cond_drop=0.1, text_pool_heads=1).train()
    torch.manual_seed(0)
    drops = torch.stack([model._uncond_mask(1000, False, None) for _ in range(5)]).float().mean().item()
    assert 0.08 < drops < 0.12
    assert model.eval()._uncond_mask(1000, False, None) is None


def test_initialization_statistics(make_text):
    from infinity_train.models.infinity import InfinityTransformer

    C, depth, d = 128, 4, 16
    torch.manual_seed(0)
    model = InfinityTransformer(C, depth, 2, d, 32, 6, text_pool_heads=2)
    std = math.sqrt(1 / (3 * C))
    rel = lambda a, b: abs(a - b) / b  # noqa: E731

    assert rel(model.word_embed.weight.std().item(), std) < 0.1
    assert rel(model.blocks[0].self_attn.qkv.weight.std().item(), std) < 0.05
    for block in model.blocks:
        for proj in (block.self_attn.proj, block.cross_attn.proj, block.ffn.fc2):
            assert rel(proj.weight.std().item(), std / math.sqrt(2 * depth)) < 0.1
        assert torch.allclose(block.self_attn.logit_scale, torch.full((2,), math.log(4.0)))
    assert rel(model.head.weight.std().item(), 0.02 * std) < 0.1
    assert model.head.bias.abs().max() == 0

    text = make_text([3, 5])
    with torch.no_grad():
        context = model.encode_text(text, None, model_plan(model))
        adaln = model.shared_adaln(context.cond).view(2, 6, C)
        for block in model.blocks:
            values = dict(zip(ADALN_CHUNKS, (adaln + block.adaln_table).unbind(1)))
            assert max(values[g].abs().max().item() for g in ("gate1", "gate2")) < 1e-4
            assert max(values[s].abs().max().item() for s in ("scale1", "scale2", "shift1", "shift2")) < 0.05
        schedule = ((1, 1), (2, 2), (3, 3))
        logits = model(torch.randn(2, 13, d) / 4, text, schedule)
    assert logits.abs().max().item() < 0.1
    labels = torch.rand(2, 14, d) > 0.5
    assert bitwise_loss(logits, labels, schedule).loss.item() == pytest.approx(math.log(2), abs=0.01)


def model_plan(model):
    from infinity_train.models.attention import plan_attention

    return plan_attention(model.attention, "cpu")


def test_stochastic_depth_grows_linearly_and_drops_whole_samples():
    from infinity_train.models.blocks import drop_path
    from infinity_train.models.infinity import InfinityTransformer

    model = InfinityTransformer(64, 5, 1, 8, 32, 4, drop_path=0.2, text_pool_heads=1)
    assert [b.drop_path_rate for b in model.blocks] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2)
    dropped = drop_path(x, 0.25, training=True)
    per_sample = dropped.flatten(1)
    assert torch.allclose(per_sample.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert (per_sample == per_sample[:, :1]).all()  # a sample's branch is kept or dropped whole
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert torch.equal(drop_path(x, 0.25, training=False), x)
