"""Shared tiny builders for the tokenizer tests (CPU, fp32)."""

from __future__ import annotations

import torch

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer

TINY = {"base_channels": 8, "channel_multipliers": (1, 1, 2, 2, 2), "encoder_res_blocks": 1, "decoder_res_blocks": 1}


def tiny_tokenizer(d: int = 16, seed: int = 0, **overrides) -> BitwiseTokenizer:
    torch.manual_seed(seed)
    return BitwiseTokenizer(d, **{**TINY, **overrides})
