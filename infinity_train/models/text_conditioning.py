"""The pieces that condition the transformer on packed caption tokens (``infinity_train.text.packed.PackedText``)."""

from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.models.attention import PackedTextLayout, packed_cross_attention
from infinity_train.text.packed import PackedText


def substitute_uncond(text: PackedText, uncond: torch.Tensor, mask: torch.Tensor) -> PackedText:
    """Replace the caption of every sample where ``mask`` (B,) is True by the first len(caption) rows of
    ``uncond`` (T, Dt), as the release does: the unconditional text has the caption's length, so the
    packing (and every attention over it) is unchanged."""
    mask_list = mask.tolist()
    if not any(mask_list):
        return text
    lengths = (text.cu_seqlens[1:] - text.cu_seqlens[:-1]).tolist()
    if max(length for drop, length in zip(mask_list, lengths) if drop) > uncond.shape[0]:
        raise ValueError(f"a caption has more tokens than the {uncond.shape[0]} rows of the unconditional text (model text_max_len)")
    tokens = text.tokens.clone()
    for drop, start, length in zip(mask_list, text.cu_seqlens[:-1].tolist(), lengths):
        if drop:
            tokens[start : start + length] = uncond[:length].to(tokens.dtype)
    return PackedText(tokens, text.cu_seqlens, text.max_seqlen)



class TextAttentivePool(nn.Module):
    """Multi-head attention of one learned query over each caption: the pooled condition c (B, C)."""

    def __init__(self, text_dim: int, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.query = nn.Parameter(torch.zeros(1, width))
        self.kv = nn.Linear(text_dim, 2 * width, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor, layout: PackedTextLayout) -> torch.Tensor:
        """tokens (total, Dt) normalized caption tokens; ``layout`` prepared for one query per sample."""
        batch = layout.cu_seqlens.numel() - 1
        kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        k, v = F.linear(tokens, self.kv.weight, kv_bias).view(-1, 2, self.heads, self.head_dim).unbind(1)
        q = self.query.view(1, self.heads, 1, self.head_dim).expand(batch, -1, -1, -1).to(k.dtype)
        pooled = packed_cross_attention(q, k, v, layout, scale=1 / math.sqrt(self.head_dim))
        return self.proj(pooled.reshape(batch, -1))
