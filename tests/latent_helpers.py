"""Synthetic multi-scale latents shared by the quantizer and self-correction tests."""

from __future__ import annotations

import math

import torch

from infinity_train.tokenizer.ops import upsample


def multiscale_latent(d: int, schedule, seed: int = 0, batch: int = 2, token_norm: float = 3.0) -> torch.Tensor:
    """A random latent with content at every scale of ``schedule`` (like a real encoder's latent,
    unlike i.i.d. noise) and a per-token RMS norm of about ``token_norm``: the sum of K unit-norm
    codes can only approximate latents whose norm is not far below one code's."""
    generator = torch.Generator().manual_seed(seed)
    full = tuple(schedule[-1])
    latent = torch.zeros(batch, d, *full)
    for h, w in schedule:
        latent += upsample(torch.randn(batch, d, h, w, generator=generator), full)
    return latent * token_norm / math.sqrt(len(schedule) * d)
