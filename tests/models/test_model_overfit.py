"""A debug-size model can memorize a few fixed bit targets: the whole training path learns."""

from __future__ import annotations

import torch

from infinity_train.models.infinity import InfinityTransformer
from infinity_train.models.loss import bitwise_loss

SCHEDULE = ((1, 1), (2, 2), (4, 4))  # the 64px 1:1 schedule, 21 tokens
BITS = 16
MAX_STEPS = 60


def test_debug_model_overfits_four_fixed_targets(make_text):
    torch.manual_seed(0)
    model = InfinityTransformer(128, 2, 2, BITS, 32, 6, drop_path=0.0, cond_drop=0.0, attention="sdpa", text_pool_heads=2).train()
    g = torch.Generator().manual_seed(1)
    text = make_text([3, 5, 2, 4], seed=1)
    labels = torch.rand(4, 21, BITS, generator=g) > 0.5
    inputs = torch.randn(4, 20, BITS, generator=g) / 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.97), weight_decay=0.0)

    initial = None
    for _ in range(MAX_STEPS):
        result = bitwise_loss(model(inputs, text, SCHEDULE), labels, SCHEDULE)
        initial = initial if initial is not None else result.loss.item()
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()
        if result.token_accuracy.item() > 0.9:
            break

    model.eval()
    with torch.no_grad():
        final = bitwise_loss(model(inputs, text, SCHEDULE), labels, SCHEDULE)
    bit_accuracy = (final.scale_bit_accuracy * torch.tensor([1.0, 4.0, 16.0])).sum().item() / 21
    assert bit_accuracy > 0.95, f"bit accuracy {bit_accuracy:.3f} after {MAX_STEPS} steps"
    assert final.loss.item() < 0.5 * initial
