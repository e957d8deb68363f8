"""One Infinity transformer block and its parts: cosine self-attention with 2-D RoPE, cross-attention to
packed text, a GELU feed-forward, AdaLN modulation and stochastic depth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from infinity_train.models.attention import (
    BlockCausalLayout,
    PackedTextLayout,
    block_causal_attention,
    cached_attention,
    packed_cross_attention,
)
from infinity_train.models.rope import apply_rope

ADALN_CHUNKS = ("gate1", "gate2", "scale1", "scale2", "shift1", "shift2")
"""Order of the six AdaLN vectors in ``shared_adaln``'s output and in each block's ``adaln_table``."""

MAX_LOGIT_SCALE = math.log(100.0)


class TextContext(NamedTuple):
    """Per-batch text conditioning shared by all blocks."""

    cond: torch.Tensor  # (B, C) pooled caption: AdaLN condition and start token
    tokens: torch.Tensor  # (total, C) projected caption tokens, cross-attention keys/values source
    cu_seqlens: torch.Tensor
    max_seqlen: int


class AttentionInputs(NamedTuple):
    """What every block's attention needs for one forward, prepared once by the model."""

    rope: tuple[torch.Tensor, torch.Tensor]  # cos, sin (L_new, head_dim / 2) of this forward's tokens
    self_layout: BlockCausalLayout | None  # None in incremental mode (a LayerCache is given instead)
    cached_backend: str
    text_layout: PackedTextLayout


@dataclass
class LayerCache:
    """Keys/values one block has seen so far during incremental inference."""

    self_k: torch.Tensor | None = None  # (B, H, L_seen, hd), after RoPE
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None  # (total, H, hd): text keys never change during sampling
    cross_v: torch.Tensor | None = None


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a sample's residual branch with probability ``rate`` (rescaling the rest)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class SelfAttention(nn.Module):
    """Cosine attention: unit-norm q and k, q scaled by a learned per-head exp(logit_scale); softmax scale 1."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.logit_scale = nn.Parameter(torch.full((heads,), math.log(4.0)))
        self.proj = nn.Linear(width, width)

    def _project(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp().view(1, -1, 1, 1)
        q = F.normalize(q.float(), dim=-1) * scale
        k = F.normalize(k.float(), dim=-1)
        cos, sin = rope
        return apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype), v

    def forward(self, x: torch.Tensor, attn: AttentionInputs, cache: LayerCache | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self._project(x, attn.rope)
        if cache is None:
            out = block_causal_attention(q, k, v, attn.self_layout, scale=1.0)
        else:
            if cache.self_k is not None:
                k, v = torch.cat((cache.self_k, k), dim=2), torch.cat((cache.self_v, v), dim=2)
            cache.self_k, cache.self_v = k, v
            out = cached_attention(q, k, v, attn.cached_backend, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class CrossAttention(nn.Module):
    """Scaled dot-product attention of image tokens over their own sample's packed text tokens."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def text_kv(self, text_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        k, v = F.linear(text_tokens, self.kv.weight, bias).view(-1, 2, self.heads, self.head_dim).unbind(1)
        return k, v

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor, layout: PackedTextLayout, cache: LayerCache | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        if cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v
        else:
            k, v = self.text_kv(text_tokens)
            if cache is not None:
                cache.cross_k, cache.cross_v = k, v
        q = self.q(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        out = packed_cross_attention(q, k, v, layout, scale=1 / math.sqrt(self.head_dim))
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class InfinityBlock(nn.Module):
    """AdaLN-modulated self-attention, ungated cross-attention to text, AdaLN-modulated FFN."""

    def __init__(self, width: int, heads: int, ffn_hidden: int, drop_path_rate: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.adaln_table = nn.Parameter(torch.zeros(len(ADALN_CHUNKS), width))
        self.norm = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.self_attn = SelfAttention(width, heads)
        self.cross_norm = nn.LayerNorm(width, eps=norm_eps)
        self.cross_attn = CrossAttention(width, heads)
        self.ffn = FeedForward(width, ffn_hidden)

    def forward(
        self,
        x: torch.Tensor,
        shared_adaln: torch.Tensor,
        text_tokens: torch.Tensor,
        attn: AttentionInputs,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """x (B, L, C); shared_adaln (B, 6, C), the shared projection of the condition; text_tokens
        (total, C) the projected packed caption; with ``cache``, x holds one scale's new tokens."""
        gate1, gate2, scale1, scale2, shift1, shift2 = (shared_adaln + self.adaln_table).unsqueeze(2).unbind(1)  # (B, 1, C)
        out = self.self_attn(self.norm(x) * (1 + scale1) + shift1, attn, cache)
        x = x + drop_path(out * gate1, self.drop_path_rate, self.training)
        x = x + self.cross_attn(self.cross_norm(x), text_tokens, attn.text_layout, cache)
        ffn = self.ffn(self.norm(x) * (1 + scale2) + shift2)
        return x + drop_path(ffn * gate2, self.drop_path_rate, self.training)
