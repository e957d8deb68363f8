"""Bitwise self-correction (BSC): teacher forcing with randomly flipped bits.

For each of the first ``num_scales`` scales a strength s ~ U{0, 0.01, ..., p} is drawn (once per
batch and scale, as in the release; per sample with ``per_sample_strength``) and every bit of that
scale is flipped with probability s before its codes join the running sum. The labels of every
scale are the bits of the residual F - (corrupted running sum), so the transformer learns to
predict what undoes the earlier mistakes. With p = 0 the result is plain teacher forcing: labels
equal ``encode_bits``. ``requant=False`` is the release's ``noise_apply_requant=0``: the flips are
drawn but the clean codes are summed, so inputs and labels stay those of plain teacher forcing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infinity_train.geometry import Schedule, latent_schedule
from infinity_train.tokenizer.ops import patchify_bits
from infinity_train.tokenizer.quantizer import flatten_bits, residual_scheme

STRENGTH_STEP = 0.01


@dataclass
class SelfCorrectionBatch:
    inputs: torch.Tensor
    """(B, L - h_1 w_1, token_dim) float: transformer inputs after the start token."""
    labels: list[torch.Tensor]
    """Per scale (B, h_k, w_k, token_dim) bool: bits re-derived from the corrupted running sum."""
    corrupted_bits: list[torch.Tensor]
    """Per scale (B, h_k, w_k, token_dim) bool: the bits that were actually summed into the inputs."""
    strengths: torch.Tensor
    """(B, min(num_scales, K)) float: the flip probability of each sample and corrupted scale (rows are
    equal unless the strength is drawn per sample)."""

    @property
    def flat_labels(self) -> torch.Tensor:
        """(B, L, token_dim) bool, scales concatenated row-major."""
        return flatten_bits(self.labels)


def draw_strengths(
    batch: int, num_scales: int, max_strength: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Strengths on the grid {0, 0.01, ..., max_strength}, uniform, shape (batch, num_scales)."""
    if not 0.0 <= max_strength <= 1.0:
        raise ValueError(f"max flip strength must be in [0, 1], got {max_strength}")
    steps = int(round(max_strength / STRENGTH_STEP))
    return torch.randint(0, steps + 1, (batch, num_scales), generator=generator, device=device).float() * STRENGTH_STEP


def bitwise_self_correction(
    latent: torch.Tensor,
    schedule: Schedule,
    max_strength: float = 0.3,
    num_scales: int = 13,
    generator: torch.Generator | None = None,
    patchify: bool = False,
    resampling: str = "bilinear",
    per_sample_strength: bool = False,
    requant: bool = True,
) -> SelfCorrectionBatch:
    """Teacher-forcing inputs and labels of a continuous latent F (B, d, H, W) under BSC.

    ``schedule`` is the token schedule; with ``patchify`` the latent has twice its grid and
    inputs/labels are 2x2 space-to-depth (token_dim = 4d), as the tokenizer's bits are.
    ``resampling`` is the model's next-scale input resampling (``ops.scale_input``).
    Random numbers come from ``generator`` (and live on its device) for reproducibility.
    """
    latent_grids = latent_schedule(schedule, patchify)
    num_corrupted = min(num_scales, len(latent_grids))
    rng_device = generator.device if generator is not None else latent.device
    batch = latent.shape[0]
    strengths = draw_strengths(batch if per_sample_strength else 1, num_corrupted, max_strength, generator, rng_device)
    strengths = strengths.expand(batch, num_corrupted)

    def flip(k: int, bits: torch.Tensor) -> torch.Tensor:
        if k >= num_corrupted:
            return bits
        draws = torch.rand(bits.shape, generator=generator, device=rng_device).to(bits.device)
        flips = draws < strengths[:, k].to(bits.device).view(-1, 1, 1, 1)
        return bits ^ flips if requant else bits

    scheme = residual_scheme(latent, latent_grids, corrupt=flip, resampling=resampling)
    labels, corrupted, inputs = scheme.labels, scheme.added, scheme.inputs
    if patchify:
        inputs = _patchify_inputs(inputs, latent_grids)
        labels = [patchify_bits(b) for b in labels]
        corrupted = [patchify_bits(b) for b in corrupted]
    return SelfCorrectionBatch(inputs=inputs, labels=labels, corrupted_bits=corrupted, strengths=strengths)


def _patchify_inputs(inputs: torch.Tensor, latent_grids: Schedule) -> torch.Tensor:
    """(B, sum_k h_k w_k, d) on latent grids (k >= 2) -> (B, sum_k h_k w_k / 4, 4d) on token grids."""
    pieces, start = [], 0
    for h, w in latent_grids[1:]:
        piece = inputs[:, start : start + h * w].reshape(inputs.shape[0], h, w, -1)
        pieces.append(patchify_bits(piece).flatten(1, 2))
        start += h * w
    return torch.cat(pieces, dim=1) if pieces else inputs.new_zeros((inputs.shape[0], 0, inputs.shape[-1] * 4))
