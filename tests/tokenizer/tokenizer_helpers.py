"""Shared tiny builders for the tokenizer tests (CPU, fp32)."""

from __future__ import annotations

import math

import torch

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer
from infinity_train.tokenizer.ops import upsample

TINY = {"base_channels": 8, "channel_multipliers": (1, 1, 2, 2, 2), "encoder_res_blocks": 1, "decoder_res_blocks": 1}


def tiny_tokenizer(d: int = 16, seed: int = 0, **overrides) -> BitwiseTokenizer:
    torch.manual_seed(seed)
    return BitwiseTokenizer(d, **{**TINY, **overrides})


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
