"""Binary spherical quantization (BSQ) and its multi-scale residual scheme.

For a latent F (B, d, H, W) and a schedule of grids (h_k, w_k) ending at (H, W):
    r_k = area_down(F - sum_{j<k} up(q_j)),   q_k = bsq(r_k),   F ~ sum_k up(q_k)
where bsq L2-normalizes each token's d-vector and takes sign / sqrt(d). Bits are q > 0 and
are laid out channels-last (B, h_k, w_k, d); codes are channels-first (B, d, h_k, w_k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.geometry import SUPPORTED_RESOLUTIONS, TEMPLATES, Grid, Schedule, scale_schedule
from infinity_train.tokenizer.ops import area_downsample, bits_to_codes, scale_input, upsample



# ---------------------------------------------------------------- schedules


def check_schedule(schedule: Schedule, full_hw: Sequence[int]) -> tuple[Grid, ...]:
    """The schedule as a tuple of (h, w); its last grid must be the full latent grid."""
    grids = tuple((int(h), int(w)) for h, w in schedule)
    if not grids:
        raise ValueError("the scale schedule is empty")
    if grids[-1] != tuple(full_hw):
        raise ValueError(f"the schedule ends at {grids[-1]} but the latent grid is {tuple(full_hw)}; pick the schedule of this resolution")
    return grids


def schedule_for_grid(grid: Sequence[int]) -> tuple[Grid, ...]:
    """The published schedule whose final scale is ``grid`` (h, w) tokens, searched over all templates."""
    target = (int(grid[0]), int(grid[1]))
    for template in TEMPLATES:
        for resolution in SUPPORTED_RESOLUTIONS:
            candidate = scale_schedule(resolution, template)
            if candidate[-1] == target:
                return candidate
    raise ValueError(
        f"token grid {target[0]}x{target[1]} is not the last scale of any schedule; "
        f"image sizes must match an aspect template at one of the resolutions {SUPPORTED_RESOLUTIONS}"
    )


# ---------------------------------------------------------------- single-scale BSQ


def codes_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bits (B, h, w, d) -> codes (B, d, h, w) with entries +-1/sqrt(d).

    Always a fresh tensor with default strides: resampling kernels pick their path from the
    memory layout (ambiguous on 1x1 grids) and differ in the last float bit, while the same bits
    must give the same sums on every path (teacher forcing, BSC, decoding)."""
    return bits_to_codes(bits).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


def bits_of(residual: torch.Tensor) -> torch.Tensor:
    """Signs of a residual (B, d, h, w) as bits (B, h, w, d); normalization does not change them."""
    return (residual > 0).permute(0, 2, 3, 1)


def bsq(residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize one scale. Returns (straight-through codes, bits, normalized residual z).

    Straight-through estimator: the gradient of the codes is that of z, as in z + (q - z).detach();
    written q + (z - z.detach()) so the forward value is exactly the code sign(z)/sqrt(d).
    """
    z = F.normalize(residual, dim=1)
    bits = bits_of(residual)
    codes = codes_from_bits(bits).to(z.dtype)
    return codes + (z - z.detach()), bits, z


# ---------------------------------------------------------------- multi-scale scheme (no gradients)


BitsCorruption = Callable[[int, torch.Tensor], torch.Tensor]
"""(scale index, clean bits of that scale) -> the bits actually added to the running sum."""


class RunningSum:
    """The running reconstruction sum_{j<k} up(q_j) on the full latent grid: the one loop body of
    next-scale prediction. Quantization (residuals), decoding (the sum), teacher forcing and
    self-correction (next-scale inputs) and sampling all accumulate codes through it, so the same
    codes give the same sums, bit for bit, on every path."""

    def __init__(self, like: torch.Tensor) -> None:
        """``like``: a (B, d, H, W) tensor whose shape, dtype and device the sum takes."""
        self.total = torch.zeros_like(like)
        self.full_hw: Grid = (int(like.shape[-2]), int(like.shape[-1]))

    def add(self, codes: torch.Tensor) -> None:
        """Add one scale's codes (B, d, h, w), upsampled to the full grid."""
        self.total = self.total + upsample(codes, self.full_hw)

    def residual(self, latent: torch.Tensor, grid: Grid) -> torch.Tensor:
        """What the next scale quantizes: area_down(F - sum) on ``grid``."""
        return area_downsample(latent - self.total, grid)

    def next_input(self, grid: Grid, resampling: str = "bilinear") -> torch.Tensor:
        """The transformer's input for the scale of ``grid``: (B, h*w, d)."""
        return next_scale_input(self.total, grid, resampling)


@dataclass
class ResidualScheme:
    labels: list[torch.Tensor]
    """Per scale (B, h, w, d) bool: bits of the residual left by the earlier *added* bits."""
    added: list[torch.Tensor]
    """Per scale (B, h, w, d) bool: the bits summed into the reconstruction (``corrupt``'s output)."""
    inputs: torch.Tensor
    """(B, L - h_1 w_1, d): next-scale inputs built from the added bits (teacher forcing)."""


def residual_scheme(
    latent: torch.Tensor, schedule: Schedule, corrupt: BitsCorruption | None = None, resampling: str = "bilinear"
) -> ResidualScheme:
    """Run the residual scheme on a latent (B, d, H, W), optionally corrupting each scale's bits before
    they are summed; the transformer's teacher-forcing inputs come out of the same pass."""
    latent = latent.detach().float()
    grids = check_schedule(schedule, tuple(latent.shape[-2:]))
    running = RunningSum(latent)
    labels: list[torch.Tensor] = []
    added: list[torch.Tensor] = []
    inputs = [latent.new_zeros((latent.shape[0], 0, latent.shape[1]))]
    for k, grid in enumerate(grids):
        if k > 0:
            inputs.append(running.next_input(grid, resampling))
        bits = bits_of(running.residual(latent, grid))
        used = corrupt(k, bits) if corrupt is not None else bits
        labels.append(bits)
        added.append(used)
        if k + 1 < len(grids):
            running.add(codes_from_bits(used))
    return ResidualScheme(labels, added, torch.cat(inputs, dim=1))


def residual_quantize(
    latent: torch.Tensor, schedule: Schedule, corrupt: BitsCorruption | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(labels, added) of ``residual_scheme``: without corruption both are the plain per-scale bits."""
    scheme = residual_scheme(latent, schedule, corrupt)
    return scheme.labels, scheme.added


@torch.no_grad()
def encode_bits(latent: torch.Tensor, schedule: Schedule) -> list[torch.Tensor]:
    """Per-scale bits (B, h_k, w_k, d) as bool of a continuous latent (B, d, H, W)."""
    return residual_quantize(latent, schedule)[0]


def _as_codes(codes_or_bits: torch.Tensor, grid: Grid, k: int) -> torch.Tensor:
    """Accept bool bits (B, h, w, d) or float codes (B, d, h, w); return codes (B, d, h, w)."""
    codes = codes_from_bits(codes_or_bits) if codes_or_bits.dtype == torch.bool else codes_or_bits.float()
    if codes.ndim != 4 or tuple(codes.shape[-2:]) != grid:
        layout = "(B, h, w, d) bits" if codes_or_bits.dtype == torch.bool else "(B, d, h, w) codes"
        raise ValueError(f"scale {k}: expected {layout} on the grid {grid}, got shape {tuple(codes_or_bits.shape)}")
    return codes


def _check_count(items: Sequence[torch.Tensor], grids: Sequence[Grid], what: str) -> None:
    if len(items) != len(grids):
        raise ValueError(f"got {len(items)} scales of {what} for a schedule of {len(grids)} scales")


def bits_to_latent(bits_list: Sequence[torch.Tensor], schedule: Schedule, full_hw: Sequence[int] | None = None) -> torch.Tensor:
    """Sum of upsampled per-scale codes (B, d, H, W); ``full_hw`` defaults to the schedule's last grid.

    ``bits_list`` may be a prefix of the schedule (partial reconstruction of early scales).
    """
    grids = tuple((int(h), int(w)) for h, w in schedule)
    full = tuple(full_hw) if full_hw is not None else grids[-1]
    if not bits_list or len(bits_list) > len(grids):
        raise ValueError(f"got {len(bits_list)} scales of bits for a schedule of {len(grids)} scales")
    codes = [_as_codes(bits, grid, k) for k, (bits, grid) in enumerate(zip(bits_list, grids))]
    running = RunningSum(codes[0].new_empty((codes[0].shape[0], codes[0].shape[1], *full)))
    for scale_codes in codes:
        running.add(scale_codes)
    return running.total


def teacher_forcing_inputs(codes_list: Sequence[torch.Tensor], schedule: Schedule, resampling: str = "bilinear") -> torch.Tensor:
    """Transformer inputs after its start token: (B, L - h_1 w_1, d), for known bits of every scale.

    For k = 2..K: the running reconstruction sum_{j<k} up(q_j) resampled (``ops.scale_input`` with
    ``resampling``) to scale k's grid, flattened row-major, scales concatenated. ``codes_list`` holds
    per-scale bool bits (B, h, w, d) or float codes (B, d, h, w).
    """
    grids = tuple((int(h), int(w)) for h, w in schedule)
    _check_count(codes_list, grids, "codes")
    first = _as_codes(codes_list[0], grids[0], 0)
    running = RunningSum(first.new_empty((first.shape[0], first.shape[1], *grids[-1])))
    inputs = [first.new_zeros((first.shape[0], 0, first.shape[1]))]
    for k, grid in enumerate(grids):
        if k > 0:
            inputs.append(running.next_input(grid, resampling))
        if k + 1 < len(grids):
            running.add(first if k == 0 else _as_codes(codes_list[k], grid, k))
    return torch.cat(inputs, dim=1)


def next_scale_input(summed_codes: torch.Tensor, grid: Grid, resampling: str = "bilinear") -> torch.Tensor:
    """Input for the scale of ``grid``: (B, h*w, d) from the running sum (B, d, H, W)."""
    return scale_input(summed_codes, grid, resampling).flatten(2).transpose(1, 2)


def parent_bit_dependence(bits_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """How far each scale's bits are fixed by the previous scale: for scales 2..K, the mean over the
    d channels of |2 P(bit = parent bit) - 1|, the parent being the same channel at the nearest
    position of the previous scale. Returns (K-1,). 0 when the parent says nothing; 1 when every
    channel copies (a latent whose norm dwarfs the unit codes) or negates (a latent that the
    previous codes already match) its parent, so that the scale carries no information.
    Bits are (B, h, w, d)."""
    if len(bits_list) < 2:
        raise ValueError("parent_bit_dependence needs at least two scales")
    per_scale = []
    for previous, current in zip(bits_list[:-1], bits_list[1:]):
        parent = F.interpolate(previous.permute(0, 3, 1, 2).float(), size=tuple(current.shape[1:3]), mode="nearest")
        agreement = (parent.permute(0, 2, 3, 1).bool() == current).float().mean(dim=(0, 1, 2))  # per channel
        per_scale.append((2 * agreement - 1).abs().mean())
    return torch.stack(per_scale)


def flatten_bits(bits_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-scale bits (B, h_k, w_k, d) -> (B, L, d), row-major per scale, scales concatenated."""
    return torch.cat([bits.flatten(1, 2) for bits in bits_list], dim=1)


# ---------------------------------------------------------------- training-time quantizer terms


def commitment_loss(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """mse(z, q.detach()) of one scale (the 0.25 factor is applied by the loss)."""
    return F.mse_loss(z, codes.detach())


def _binary_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    # H(p) = p * softplus(-l) + (1 - p) * softplus(l), stable for large |l|
    return p * F.softplus(-logits) + (1 - p) * F.softplus(logits)


def _binary_entropy(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def entropy_penalty(z: torch.Tensor, inv_temperature: float = 100.0, diversity_gamma: float = 1.0) -> torch.Tensor:
    """Per-token entropy minus batch-code entropy of soft bits, divided by the inverse temperature.

    z is the normalized residual (B, d, h, w). Under q(c | z) ~ exp(tau <c, z>) over codes
    c in {+-1/sqrt(d)}^d the bits are independent with P(bit_i = 1) = sigmoid(2 tau z_i / sqrt(d)).
    Low per-token entropy = confident bits; high entropy of the batch-mean bit probabilities =
    all codes used. The batch-code entropy is the factorized (per-bit) approximation. The result
    is divided by tau, as in the reference, which fixes the scale the entropy weight acts on.
    """
    d = z.shape[1]
    logits = (2.0 * inv_temperature / math.sqrt(d)) * z.float()
    per_token = _binary_entropy_from_logits(logits).sum(dim=1).mean()
    batch_prob = torch.sigmoid(logits).mean(dim=(0, 2, 3))
    batch_code = _binary_entropy(batch_prob).sum()
    return (per_token - diversity_gamma * batch_code) / inv_temperature


@dataclass
class QuantizerOutput:
    latent: torch.Tensor
    """(B, d, H, W): sum of the used scales' upsampled codes, straight-through to the encoder."""
    bits: list[torch.Tensor]
    """Per used scale, (B, h_k, w_k, d) bool."""
    commitment: torch.Tensor
    """Mean over used scales of mse(z_k, q_k.detach())."""
    entropy: torch.Tensor
    """Mean over used scales of the entropy penalty."""
    latent_norm: torch.Tensor
    """Mean L2 norm of the input latent's d-vectors (detached); codes have norm 1."""
    partial_latents: dict[int, torch.Tensor] = field(default_factory=dict)
    """Scale index k -> sum of the codes of scales 0..k (straight-through), for the reg losses."""

    @property
    def num_scales_used(self) -> int:
        return len(self.bits)


class ScaleQuantizer(nn.Module):
    """BSQ of one scale with its training terms. Holds the reference's ``mask`` buffer:
    the integer weight of each bit, most significant first (2^(d-1), ..., 1), so that
    reference checkpoints load strictly; :meth:`bits_to_index` uses it."""

    def __init__(self, d: int, inv_temperature: float = 100.0, diversity_gamma: float = 1.0) -> None:
        super().__init__()
        self.d = d
        self.inv_temperature = inv_temperature
        self.diversity_gamma = diversity_gamma
        self.register_buffer("mask", 2 ** torch.arange(d - 1, -1, -1))

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residual (B, d, h, w) -> (straight-through codes, bits, commitment, entropy penalty)."""
        codes, bits, z = bsq(residual)
        return codes, bits, commitment_loss(z, codes), entropy_penalty(z, self.inv_temperature, self.diversity_gamma)

    def bits_to_index(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (..., d) -> integer code index (...), for code-usage statistics (d <= 62)."""
        if self.d > 62:
            raise ValueError(f"code indices overflow int64 at d={self.d}; count per-bit statistics instead")
        return (bits.long() * self.mask.to(bits.device)).sum(dim=-1)


class MultiScaleBSQ(nn.Module):
    """Multi-scale residual BSQ used while training the autoencoder.

    The "reg" variant (``drop_trailing_prob`` > 0, ``num_partial_scales`` > 0) randomly keeps only
    a prefix of the scales and returns partial sums of early scales, so that partial sums decode
    well; both only act in training mode.
    """

    def __init__(
        self,
        d: int,
        inv_temperature: float = 100.0,
        diversity_gamma: float = 1.0,
        drop_trailing_prob: float = 0.0,
        num_partial_scales: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_trailing_prob <= 1.0:
            raise ValueError(f"drop_trailing_prob must be in [0, 1], got {drop_trailing_prob}")
        if num_partial_scales < 0:
            raise ValueError(f"num_partial_scales must be >= 0, got {num_partial_scales}")
        self.d = d
        self.lfq = ScaleQuantizer(d, inv_temperature, diversity_gamma)
        self.drop_trailing_prob = drop_trailing_prob
        self.num_partial_scales = num_partial_scales

    def _plan(self, num_scales: int, generator: torch.Generator | None) -> tuple[int, list[int]]:
        """(number of scales to use, sorted early scale indices whose partial sums to return)."""
        used = num_scales
        if self.training and num_scales > 1 and self.drop_trailing_prob > 0:
            if torch.rand((), generator=generator).item() < self.drop_trailing_prob:
                used = int(torch.randint(1, num_scales, (), generator=generator).item())
        partial: list[int] = []
        if self.training and self.num_partial_scales > 0 and used > 1:
            order = torch.randperm(used - 1, generator=generator)[: self.num_partial_scales]
            partial = sorted(int(i) for i in order)
        return used, partial

    def forward(self, latent: torch.Tensor, schedule: Schedule, generator: torch.Generator | None = None) -> QuantizerOutput:
        if latent.ndim != 4 or latent.shape[1] != self.d:
            raise ValueError(f"quantizer expects a latent of shape (B, {self.d}, H, W), got {tuple(latent.shape)}")
        latent = latent.float()
        full_hw = tuple(latent.shape[-2:])
        grids = check_schedule(schedule, full_hw)
        used, partial_at = self._plan(len(grids), generator)

        # The residual path runs on exact, detached codes (as in encode_bits, so the bits match
        # bit for bit); gradients reach the encoder through each scale's straight-through codes.
        exact_sum, quantized = RunningSum(latent.detach()), RunningSum(latent)
        bits_list: list[torch.Tensor] = []
        commitments: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        partial: dict[int, torch.Tensor] = {}
        for k, grid in enumerate(grids[:used]):
            codes, bits, commitment, entropy = self.lfq(exact_sum.residual(latent, grid))
            bits_list.append(bits)
            commitments.append(commitment)
            entropies.append(entropy)
            quantized.add(codes)
            if k in partial_at:
                partial[k] = quantized.total
            if k + 1 < used:
                exact_sum.add(codes_from_bits(bits))
        return QuantizerOutput(
            latent=quantized.total,
            bits=bits_list,
            commitment=torch.stack(commitments).mean(),
            entropy=torch.stack(entropies).mean(),
            latent_norm=latent.detach().norm(dim=1).mean(),
            partial_latents=partial,
        )
