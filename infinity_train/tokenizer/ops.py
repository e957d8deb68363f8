"""Resampling primitives shared by the quantizer, the transformer's inputs and sampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def upsample(codes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of one scale's codes (B, d, h, w) onto the full latent grid."""
    if tuple(codes.shape[-2:]) == tuple(size):
        return codes
    return F.interpolate(codes, size=size, mode="bilinear", align_corners=False)


def area_downsample(latent: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area (box-average) downsampling of a latent (B, d, H, W) to one scale's grid."""
    if tuple(latent.shape[-2:]) == tuple(size):
        return latent
    return F.interpolate(latent, size=size, mode="area")


def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
    """Bits (..., d) as bool/0-1 -> BSQ codes (..., d) with entries +-1/sqrt(d)."""
    d = bits.shape[-1]
    return (bits.float() * 2.0 - 1.0) / math.sqrt(d)


INPUT_RESAMPLING = ("bilinear", "area")
"""How the running reconstruction becomes the next scale's input. "bilinear" is the release's (its
``F.interpolate(..., mode='trilinear')`` on (B, d, 1, H, W) is bilinear per frame); "area" box-averages."""


def scale_input(summed_codes: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """The transformer's input for the scale of grid ``size``: the running reconstruction (B, d, H, W)
    resampled to that grid. Teacher forcing, self-correction and sampling must all use this."""
    if mode == "area":
        return area_downsample(summed_codes, size)
    if mode != "bilinear":
        raise ValueError(f"input resampling must be one of {INPUT_RESAMPLING}, got {mode!r}")
    if tuple(summed_codes.shape[-2:]) == tuple(size):
        return summed_codes
    return F.interpolate(summed_codes, size=size, mode="bilinear", align_corners=False)


def patchify_bits(bits: torch.Tensor) -> torch.Tensor:
    """Latent-grid bits (B, 2h, 2w, d) -> token bits (B, h, w, 4d) (2x2 space-to-depth).

    Channel order is that of ``pixel_unshuffle``: token channel ``4c + 2dy + dx``. Works on any
    channels-last tensor (bits or codes).
    """
    channels_first = bits.permute(0, 3, 1, 2)
    return F.pixel_unshuffle(channels_first, 2).permute(0, 2, 3, 1)


def unpatchify_bits(token_bits: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`patchify_bits`: (B, h, w, 4d) -> (B, 2h, 2w, d)."""
    channels_first = token_bits.permute(0, 3, 1, 2)
    return F.pixel_shuffle(channels_first, 2).permute(0, 2, 3, 1)
