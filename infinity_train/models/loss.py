"""Bitwise cross-entropy with per-scale loss weights, and the accuracies reported with it."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from infinity_train.models.layout import as_schedule, scale_lengths, token_scale_ids


def scale_loss_weights(schedule: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """(L,) per-token weights sqrt(h_K w_K) / sqrt(h_k w_k), normalized to average 1 over tokens.

    A scale's total weight (tokens x weight) is proportional to sqrt(h_k w_k), so it grows with the
    scale's side length instead of its area.
    """
    schedule = as_schedule(schedule)
    final_h, final_w = schedule[-1]
    per_scale = torch.tensor([math.sqrt(final_h * final_w / (h * w)) for h, w in schedule], dtype=torch.float64)
    per_token = per_scale[token_scale_ids(schedule)]
    return (per_token / per_token.mean()).float().to(device)


class BitwiseLoss(NamedTuple):
    loss: torch.Tensor  # scalar: weighted mean of the per-token bit-averaged cross-entropy
    scale_losses: torch.Tensor  # (K,) unweighted mean cross-entropy of each scale (detached)
    scale_bit_accuracy: torch.Tensor  # (K,) fraction of bits predicted right per scale
    token_accuracy: torch.Tensor  # scalar: fraction of tokens with all d bits right


def bitwise_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    schedule: Sequence[Sequence[int]],
    reweight_by_scale: bool = True,
    label_smoothing: float = 0.0,
) -> BitwiseLoss:
    """logits (B, L, d, 2), labels (B, L, d) bool or 0/1; the loss is computed in fp32.

    ``loss`` is the per-token bit-averaged cross-entropy (smoothed by ``label_smoothing``), averaged
    over tokens with ``scale_loss_weights`` (the release's ``reweight_loss_by_scale=1``) or plainly
    (``reweight_by_scale=False``). The per-scale losses and accuracies are never smoothed.
    """
    schedule = as_schedule(schedule)
    batch, length, bits, _ = logits.shape
    if labels.shape != (batch, length, bits):
        raise ValueError(f"labels must be {(batch, length, bits)}, got {tuple(labels.shape)}")
    targets = labels.long()
    flat_logits, flat_targets = logits.float().reshape(-1, 2), targets.reshape(-1)
    token_ce = F.cross_entropy(flat_logits, flat_targets, reduction="none").view(batch, length, bits).mean(-1)
    trained_ce = token_ce
    if label_smoothing > 0:
        smoothed = F.cross_entropy(flat_logits, flat_targets, reduction="none", label_smoothing=label_smoothing)
        trained_ce = smoothed.view(batch, length, bits).mean(-1)
    loss = (trained_ce * scale_loss_weights(schedule, logits.device)).mean() if reweight_by_scale else trained_ce.mean()

    with torch.no_grad():
        ids = token_scale_ids(schedule, logits.device)
        tokens_per_scale = torch.tensor(scale_lengths(schedule), device=logits.device, dtype=torch.float32) * batch
        correct = logits.argmax(-1) == targets  # (B, L, d)

        def per_scale_mean(values: torch.Tensor) -> torch.Tensor:  # values (B, L)
            sums = torch.zeros(len(schedule), device=logits.device).index_add_(0, ids, values.float().sum(0))
            return sums / tokens_per_scale

        return BitwiseLoss(
            loss=loss,
            scale_losses=per_scale_mean(token_ce.detach()),
            scale_bit_accuracy=per_scale_mean(correct.float().mean(-1)),
            token_accuracy=correct.all(-1).float().mean(),
        )
