"""The Infinity transformer: bitwise next-scale prediction conditioned on packed text.

A plain ``nn.Module``: sharding, activation checkpointing and compilation are applied from outside.
Sequence layout: token 0 is the pooled caption plus ``start_pos`` (scale 1); the tokens of scales
2..K are ``word_embed`` of the teacher-forcing inputs, each scale flattened row-major. Logits are
(B, L, d, 2): two classes per bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from infinity_train.models.attention import ATTENTION_SETTINGS, AttentionPlan, plan_attention, prepare_block_causal, prepare_packed_text
from infinity_train.models.blocks import ADALN_CHUNKS, AttentionInputs, InfinityBlock, LayerCache, TextContext
from infinity_train.geometry import Schedule
from infinity_train.models.layout import as_schedule, scale_lengths, token_scale_ids
from infinity_train.models.rope import RopeTables, rope_reference_grid
from infinity_train.models.text_conditioning import TextAttentivePool, substitute_uncond
from infinity_train.sizing import release_text_pool_heads
from infinity_train.text.packed import PackedText, as_packed_text
from infinity_train.tokenizer.ops import INPUT_RESAMPLING

MODEL_FORMAT = 2
"""Version of the transformer's function, recorded in checkpoints and exports. 2: the release's RoPE positions,
text-pool heads, caption-length unconditional text and bilinear next-scale inputs (format 1 predates them)."""

INIT_GATE_GAIN = 5e-6
INIT_ADALN_GAIN = 1e-3
INIT_HEAD_GAIN = 0.02


def ffn_hidden_width(width: int, mlp_ratio: float = 4.0) -> int:
    return round(mlp_ratio * width / 256) * 256


@dataclass
class InferenceCache:
    """State of one incremental (scale by scale) generation: text conditioning and per-block keys/values."""

    text: TextContext
    shared_adaln: torch.Tensor  # (B, 6, C)
    layers: list[LayerCache]
    rope_grid: tuple[int, int] | None = None
    next_scale: int = 0
    plan: AttentionPlan | None = field(default=None, repr=False)

    @property
    def batch_size(self) -> int:
        return self.text.cond.shape[0]


class InfinityTransformer(nn.Module):
    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        bits: int,
        text_dim: int,
        text_max_len: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        cond_drop: float = 0.1,
        max_scales: int = 15,
        attention: str = "auto",
        norm_eps: float = 1e-6,
        rope_base: float = 10000.0,
        text_pool_heads: int | None = None,
        input_resampling: str = "bilinear",
    ) -> None:
        """``text_pool_heads``: heads of the attentive text pool; None = the release's rule
        (``release_text_pool_heads``). ``input_resampling``: how the running sum of codes is resampled to
        the next scale's input ("bilinear", the release's, or "area"); training and sampling read it here."""
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        pool_heads = release_text_pool_heads(text_dim, width) if text_pool_heads is None else text_pool_heads
        if pool_heads < 1 or width % pool_heads:
            rule = "" if text_pool_heads is not None else f" (the release's rule: text width {text_dim} / {64 if width > 4096 else 128})"
            raise ValueError(f"{pool_heads} text-pool heads{rule} do not divide width {width}; set text_pool_heads")
        if input_resampling not in INPUT_RESAMPLING:
            raise ValueError(f"input_resampling must be one of {INPUT_RESAMPLING}, got {input_resampling!r}")
        if attention not in ATTENTION_SETTINGS:
            raise ValueError(f"attention must be one of {ATTENTION_SETTINGS}, got {attention!r}")
        hidden = ffn_hidden_width(width, mlp_ratio)
        if hidden <= 0:
            raise ValueError(f"mlp_ratio {mlp_ratio} at width {width} gives an empty FFN (hidden = round(ratio*C/256)*256)")
        self.width, self.depth, self.heads, self.bits = width, depth, heads, bits
        self.text_dim, self.text_max_len, self.mlp_ratio = text_dim, text_max_len, mlp_ratio
        self.drop_path, self.cond_drop, self.max_scales = drop_path, cond_drop, max_scales
        self.attention = attention
        self.text_pool_heads, self.input_resampling = pool_heads, input_resampling

        self.word_embed = nn.Linear(bits, width)
        self.start_pos = nn.Parameter(torch.empty(1, 1, width))
        self.scale_embed = nn.Embedding(max_scales, width)
        self.uncond_text = nn.Parameter(torch.empty(text_max_len, text_dim))
        self.text_norm = nn.RMSNorm(text_dim, eps=norm_eps)
        self.text_pool = TextAttentivePool(text_dim, width, pool_heads)
        self.text_proj = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(approximate="tanh"), nn.Linear(width, width))
        self.shared_adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, len(ADALN_CHUNKS) * width))
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # stochastic depth grows linearly with depth
        self.blocks = nn.ModuleList(InfinityBlock(width, heads, hidden, rate, norm_eps) for rate in rates)
        self.head_norm = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.head_adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.head = nn.Linear(width, 2 * bits)
        self.rope = RopeTables(width // heads, rope_base)
        self.reset_parameters()

    def repeated_units(self) -> list[nn.ModuleList]:
        """The blocks: checkpointed, compiled and sharded one by one (``infinity_train.parallel``)."""
        return [self.blocks]

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Reference initialization (see DESIGN.md section 4)."""
        std = math.sqrt(1 / (3 * self.width))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)  # bounds +-2 absolute, as the reference
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=std)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and module.weight is not None:
                module.weight.fill_(1.0)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
        nn.init.trunc_normal_(self.start_pos, std=std)
        nn.init.trunc_normal_(self.text_pool.query, std=std)
        self.text_pool.v_bias.zero_()
        nn.init.trunc_normal_(self.uncond_text, std=1.2)
        self.uncond_text.div_(math.sqrt(self.text_dim))

        residual_gain = 1 / math.sqrt(2 * self.depth)
        gates = slice(0, 2)  # ADALN_CHUNKS starts with gate1, gate2
        for block in self.blocks:
            block.self_attn.q_bias.zero_()
            block.self_attn.v_bias.zero_()
            block.self_attn.logit_scale.fill_(math.log(4.0))
            block.cross_attn.v_bias.zero_()
            for proj in (block.self_attn.proj, block.cross_attn.proj, block.ffn.fc2):
                proj.weight.mul_(residual_gain)
            table = block.adaln_table
            table.normal_().div_(math.sqrt(self.width))
            table[gates].mul_(INIT_GATE_GAIN)
            table[gates.stop :].mul_(INIT_ADALN_GAIN)

        shared = self.shared_adaln[1].weight.view(len(ADALN_CHUNKS), self.width, self.width)
        shared[gates].mul_(INIT_GATE_GAIN)
        shared[gates.stop :].mul_(INIT_ADALN_GAIN)
        self.head_adaln[1].weight.mul_(INIT_ADALN_GAIN)
        self.head.weight.mul_(INIT_HEAD_GAIN)

    # ------------------------------------------------------------------ pieces

    def _uncond_mask(self, batch: int, force_uncond: bool, uncond_mask: torch.Tensor | None) -> torch.Tensor | None:
        if force_uncond:
            return torch.ones(batch, dtype=torch.bool)
        if uncond_mask is not None:
            if uncond_mask.shape != (batch,):
                raise ValueError(f"uncond_mask must have shape ({batch},), got {tuple(uncond_mask.shape)}")
            return uncond_mask.bool().cpu()
        if self.training and self.cond_drop > 0:
            return torch.rand(batch) < self.cond_drop
        return None

    def encode_text(self, text: PackedText, uncond_mask: torch.Tensor | None, plan: AttentionPlan) -> TextContext:
        """Caption dropout, RMSNorm, attentive pooling (c) and the cross-attention projection."""
        if uncond_mask is not None:
            text = substitute_uncond(text, self.uncond_text, uncond_mask)
        normed = self.text_norm(text.tokens)
        pool_layout = prepare_packed_text(text.cu_seqlens, text.max_seqlen, normed.shape[0], 1, plan.packed_cross)
        cond = self.text_pool(normed, pool_layout)
        # keeps uncond_text in the graph when no caption was dropped (DDP-style reducers expect every grad)
        cond = cond + 0.0 * self.uncond_text[0, 0]
        return TextContext(cond, self.text_proj(normed), text.cu_seqlens, text.max_seqlen)

    def head_logits(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """AdaLN then the bit head: (B, L, C) -> (B, L, d, 2)."""
        scale, shift = self.head_adaln(cond).view(-1, 2, self.width).unsqueeze(2).unbind(1)
        return self.head(self.head_norm(x) * (1 + scale) + shift).unflatten(-1, (self.bits, 2))

    def _check_schedule(self, schedule: Sequence[Sequence[int]]) -> Schedule:
        schedule = as_schedule(schedule)
        if len(schedule) > self.max_scales:
            raise ValueError(f"schedule has {len(schedule)} scales; the model embeds at most {self.max_scales}")
        return schedule

    # ------------------------------------------------------------------ training forward

    def forward(
        self,
        bits_input: torch.Tensor,
        text: PackedText | tuple,
        schedule: Sequence[Sequence[int]],
        *,
        force_uncond: bool = False,
        uncond_mask: torch.Tensor | None = None,
        rope_grid: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, d, 2) of every scale of ``schedule``.

        bits_input: (B, L - 1, d) teacher-forcing inputs of scales 2..K (row-major per scale).
        text: packed captions of the B samples.
        force_uncond: use the learned unconditional text for every sample.
        uncond_mask: (B,) bool, which samples use the unconditional text; by default, in training
            mode, each sample does with probability ``cond_drop``.
        rope_grid: RoPE reference grid; default ``rope_reference_grid(schedule)``.
        """
        schedule = self._check_schedule(schedule)
        text = as_packed_text(text)
        batch, length = text.batch_size, sum(scale_lengths(schedule))
        if bits_input.shape != (batch, length - 1, self.bits):
            raise ValueError(f"bits_input must be (B, L - 1, d) = {(batch, length - 1, self.bits)}, got {tuple(bits_input.shape)}")
        device = bits_input.device
        plan = plan_attention(self.attention, device)
        context = self.encode_text(text, self._uncond_mask(batch, force_uncond, uncond_mask), plan)

        start = context.cond.unsqueeze(1) + self.start_pos
        x = torch.cat((start, self.word_embed(bits_input.to(self.word_embed.weight.dtype))), dim=1)
        x = x + self.scale_embed(token_scale_ids(schedule, device))
        shared_adaln = self.shared_adaln(context.cond).view(batch, len(ADALN_CHUNKS), self.width)
        attn = AttentionInputs(
            rope=self.rope(schedule, rope_grid or rope_reference_grid(schedule), device),
            self_layout=prepare_block_causal(schedule, plan.block_causal, device),
            cached_backend=plan.cached,
            text_layout=prepare_packed_text(context.cu_seqlens, context.max_seqlen, context.tokens.shape[0], length, plan.packed_cross),
        )
        for block in self.blocks:
            x = block(x, shared_adaln, context.tokens, attn)
        return self.head_logits(x, context.cond)

    # ------------------------------------------------------------------ incremental inference

    def new_cache(
        self,
        text: PackedText | tuple,
        *,
        force_uncond: bool = False,
        uncond_mask: torch.Tensor | None = None,
        rope_grid: tuple[int, int] | None = None,
    ) -> InferenceCache:
        """Encode the text once and prepare empty per-block key/value caches."""
        text = as_packed_text(text)
        plan = plan_attention(self.attention, text.tokens.device)
        explicit = force_uncond or uncond_mask is not None  # sampling never drops captions at random
        mask = self._uncond_mask(text.batch_size, force_uncond, uncond_mask) if explicit else None
        context = self.encode_text(text, mask, plan)
        shared_adaln = self.shared_adaln(context.cond).view(text.batch_size, len(ADALN_CHUNKS), self.width)
        return InferenceCache(context, shared_adaln, [LayerCache() for _ in self.blocks], rope_grid, 0, plan)

    def forward_scale(
        self, x_k: torch.Tensor | None, k: int, schedule: Sequence[Sequence[int]], cache: InferenceCache
    ) -> torch.Tensor:
        """Logits (B, h_k * w_k, d, 2) of scale ``k`` (0-based), given the cached scales < k.

        x_k: (B, h_k * w_k, d) input of scale k (None for k = 0, whose input is the start token).
        Scales must be fed in order; the cache is extended with scale k's keys/values.
        """
        schedule = self._check_schedule(schedule)
        if k != cache.next_scale:
            raise ValueError(f"scale {k} requested but the cache holds scales 0..{cache.next_scale - 1}")
        batch, device = cache.batch_size, cache.text.cond.device
        if k == 0:
            if x_k is not None:
                raise ValueError("scale 0 is the start token and takes no input (pass x_k=None)")
            x = cache.text.cond.unsqueeze(1) + self.start_pos
        else:
            expected = (batch, scale_lengths(schedule)[k], self.bits)
            if x_k is None or x_k.shape != expected:
                raise ValueError(f"x_k of scale {k} must be {expected}, got {None if x_k is None else tuple(x_k.shape)}")
            x = self.word_embed(x_k.to(self.word_embed.weight.dtype))
        x = x + self.scale_embed.weight[k]
        plan = cache.plan or plan_attention(self.attention, device)
        text = cache.text
        attn = AttentionInputs(
            rope=self.rope.for_scale(schedule, cache.rope_grid or rope_reference_grid(schedule), k, device),
            self_layout=None,
            cached_backend=plan.cached,
            text_layout=prepare_packed_text(text.cu_seqlens, text.max_seqlen, text.tokens.shape[0], x.shape[1], plan.packed_cross),
        )
        for block, layer_cache in zip(self.blocks, cache.layers):
            x = block(x, cache.shared_adaln, text.tokens, attn, layer_cache)
        cache.next_scale = k + 1
        return self.head_logits(x, cache.text.cond)
