"""2-D RoPE positions and rotations; per-scale loss weights and the bitwise loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from infinity_train.models.layout import scale_offsets
from infinity_train.models.loss import bitwise_loss, scale_loss_weights
from infinity_train.models.rope import apply_rope, rope_angles, rope_reference_grid, scale_positions
from infinity_train.geometry import SUPPORTED_RESOLUTIONS, TEMPLATES, scale_schedule


@pytest.mark.parametrize("h_div_w", list(TEMPLATES))
def test_a_scale_has_the_same_positions_at_every_resolution(h_div_w):
    full = scale_schedule(1024, h_div_w)
    reference = scale_positions(full, rope_reference_grid(full))
    final_h, final_w = full[-1]
    last = reference[scale_offsets(full)[-2] :]
    assert torch.equal(last[:, 0].unique(), torch.arange(final_h, dtype=torch.float64))  # final scale = integer grid
    assert torch.equal(last[:, 1].unique(), torch.arange(final_w, dtype=torch.float64))
    for resolution in SUPPORTED_RESOLUTIONS:
        schedule = scale_schedule(resolution, h_div_w)
        grid = rope_reference_grid(schedule, h_div_w if resolution == 64 else None)  # 64px lists are ambiguous
        positions = scale_positions(schedule, grid)
        assert torch.equal(positions, reference[: positions.shape[0]]), resolution


def test_positions_are_rounded_multiples_of_the_final_grid_step():
    """The release's rope2d_normalized_by_hw=2: row i of h sits at round(i * H / h) (half to even)."""
    positions = scale_positions(((1, 1), (2, 2), (4, 2), (6, 6)), (8, 4))
    assert positions[0].tolist() == [0, 0]  # the 1x1 scale sits at the origin
    assert positions[1:5].tolist() == [[0, 0], [0, 2], [4, 0], [4, 2]]
    assert positions[5:7].tolist() == [[0, 0], [0, 2]]
    assert positions[13::6, 0].tolist() == [0, 1, 3, 4, 5, 7]  # rows i * 8/6 = 0, 1.33, 2.67, 4, 5.33, 6.67


def test_rope_is_a_rotation_that_depends_on_relative_position():
    head_dim = 16
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, head_dim, generator=g), torch.randn(1, 2, 1, head_dim, generator=g)

    def rotate(x, row, col):
        angles = rope_angles(torch.tensor([[row, col]]), head_dim)
        return apply_rope(x, angles.cos().float(), angles.sin().float())

    assert torch.allclose(rotate(q, 3.0, 7.5).norm(dim=-1), q.norm(dim=-1), atol=1e-6)
    dot = lambda a, b: (a * b).sum(-1)  # noqa: E731
    base = dot(rotate(q, 1.0, 2.0), rotate(k, 4.0, 0.5))
    assert torch.allclose(base, dot(rotate(q, 11.0, -3.0), rotate(k, 14.0, -4.5)), atol=1e-5)
    assert not torch.allclose(base, dot(rotate(q, 1.0, 2.0), rotate(k, 4.0, 1.5)), atol=1e-3)


def test_rows_and_columns_use_separate_halves_of_the_head():
    angles = rope_angles(torch.tensor([[2.0, 5.0], [2.0, 9.0], [6.0, 5.0]]), head_dim=16)
    assert torch.equal(angles[0, :4], angles[1, :4]) and not torch.equal(angles[0, 4:], angles[1, 4:])
    assert torch.equal(angles[0, 4:], angles[2, 4:]) and not torch.equal(angles[0, :4], angles[2, :4])


@pytest.mark.parametrize("h_div_w", [1.0, 0.4, 3.0])
def test_loss_weights_average_one_and_scale_totals_grow_with_side(h_div_w):
    schedule = scale_schedule(1024, h_div_w)
    weights = scale_loss_weights(schedule)
    assert weights.shape == (sum(h * w for h, w in schedule),)
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-6)
    offsets = scale_offsets(schedule)
    per_token = [weights[offsets[k]].item() for k in range(len(schedule))]
    totals = [weights[offsets[k] : offsets[k + 1]].sum().item() for k in range(len(schedule))]
    sides = [math.sqrt(h * w) for h, w in schedule]
    for k in range(1, len(schedule)):
        assert per_token[k - 1] / per_token[k] == pytest.approx(sides[k] / sides[k - 1], rel=1e-5)
        assert totals[k] / totals[0] == pytest.approx(sides[k] / sides[0], rel=1e-4)
        if sides[k] > sides[k - 1]:
            assert totals[k] > totals[k - 1]


def test_bitwise_loss_matches_a_direct_computation():
    schedule = ((1, 1), (2, 2), (3, 3))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 14, 4, 2, generator=g)
    labels = torch.rand(2, 14, 4, generator=g) > 0.5
    result = bitwise_loss(logits, labels, schedule)

    per_bit = -F.log_softmax(logits, -1).gather(-1, labels.long()[..., None])[..., 0]  # (B, L, d)
    per_token = per_bit.mean(-1)
    weights = torch.tensor([math.sqrt(9 / 1)] * 1 + [math.sqrt(9 / 4)] * 4 + [1.0] * 9)
    weights = weights / weights.mean()
    assert result.loss.item() == pytest.approx((per_token * weights).mean().item(), rel=1e-6)
    correct = logits.argmax(-1) == labels
    for k, (lo, hi) in enumerate([(0, 1), (1, 5), (5, 14)]):
        assert result.scale_losses[k].item() == pytest.approx(per_token[:, lo:hi].mean().item(), rel=1e-6)
        assert result.scale_bit_accuracy[k].item() == pytest.approx(correct[:, lo:hi].float().mean().item(), rel=1e-6)
    assert result.token_accuracy.item() == pytest.approx(correct.all(-1).float().mean().item())

    perfect = bitwise_loss(torch.stack((~labels, labels), -1).float() * 30, labels, schedule)
    assert perfect.loss.item() < 1e-10 and perfect.token_accuracy.item() == 1.0
