"""Analytic size of an Infinity transformer: parameters by part and training FLOPs per image.

The parameter formulas mirror ``infinity_train.models`` exactly (a test compares them with the
built model's ``numel``). FLOPs count a multiply-add as 2 and include attention over the
block-causal mask, cross-attention to the text and the text path; training = 3 x forward
(backward ~ 2 x forward). The frozen text encoder and tokenizer are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from typing import TYPE_CHECKING

from infinity_train import geometry

if TYPE_CHECKING:
    from infinity_train.config.schema import TrainConfig


WIDTH_PER_DEPTH = 64  # the family's shape rule: width = 64 * depth, heads = depth (head dim 64)


def family_shape(depth: int, width: int | None = None, heads: int | None = None) -> tuple[int, int]:
    """(width, heads) of the depth dial's model family; a pinned width or head count (a published rung) wins."""
    width_ = width if width is not None else WIDTH_PER_DEPTH * depth
    heads_ = heads if heads is not None else (depth if width is None else width_ // WIDTH_PER_DEPTH)
    return width_, heads_


def release_text_pool_heads(text_dim: int, width: int) -> int:
    """The release's head count for the attentive text pool: text width / 128 (/ 64 above model width 4096)."""
    return text_dim // (64 if width > 4096 else 128)


@dataclass(frozen=True)
class TransformerShape:
    depth: int
    width: int
    heads: int
    bits: int  # tokenizer bits per token (d)
    text_dim: int
    text_max_len: int
    mlp_ratio: float = 4.0
    max_scales: int = 15

    @property
    def ffn_hidden(self) -> int:
        return round(self.mlp_ratio * self.width / 256) * 256


def parameter_counts(shape: TransformerShape) -> dict[str, int]:
    """Parameters of each part; ``total`` and ``non_embedding`` (total minus the input embeddings:
    bit projection, start position, scale embedding and the learned unconditional text)."""
    C, Dt, d, hid = shape.width, shape.text_dim, shape.bits, shape.ffn_hidden
    self_attn = 3 * C * C + 2 * C + shape.heads + C * C + C
    cross_attn = 2 * C + (C * C + C) + 2 * C * C + C + (C * C + C)  # cross_norm, q, kv, v_bias, proj
    ffn = C * hid + hid + hid * C + C
    block = 6 * C + self_attn + cross_attn + ffn  # + the per-block AdaLN table
    parts = {
        "blocks": shape.depth * block,
        "adaln_shared": 6 * C * C + 6 * C,
        "text_path": Dt + (C + 2 * C * Dt + C + C * C + C) + (Dt * C + C + C * C + C),  # norm, pool, kv projection
        "head": (2 * C * C + 2 * C) + (2 * d * C + 2 * d),
        "embeddings": (d * C + C) + C + shape.max_scales * C + shape.text_max_len * Dt,
    }
    parts["total"] = sum(parts.values())
    parts["non_embedding"] = parts["total"] - parts["embeddings"]
    parts["per_block"] = block
    return parts


def forward_flops_per_image(shape: TransformerShape, schedule: tuple[tuple[int, int], ...], text_tokens: int) -> dict[str, int]:
    """Forward FLOPs for one image of ``schedule`` with ``text_tokens`` caption tokens, by part."""
    C, Dt, d, hid = shape.width, shape.text_dim, shape.bits, shape.ffn_hidden
    L, T = geometry.num_tokens(schedule), text_tokens
    pairs = geometry.attended_pairs(schedule)
    per_block_linear = 2 * L * (4 * C * C + 2 * C * C + 2 * C * hid) + 2 * T * 2 * C * C  # qkv+proj, ca q+proj, ffn; ca kv on text
    flops = {
        "blocks_linear": shape.depth * per_block_linear,
        "self_attention": shape.depth * 4 * C * pairs,  # QK^T and AV over the block-causal mask
        "cross_attention": shape.depth * 4 * C * L * T,
        "input_embed": 2 * d * C * (L - schedule[0][0] * schedule[0][1]),
        "text_path": 2 * T * (Dt * C + C * C) + 2 * T * Dt * 2 * C + 4 * C * T + 2 * C * C,
        "adaln": 2 * C * 6 * C + 2 * C * 2 * C,
        "head": 2 * C * 2 * d * L,
    }
    flops["forward_total"] = sum(flops.values())
    return flops


def describe(shape: TransformerShape, resolution: int, text_tokens: int, h_div_w: float = 1.0) -> dict:
    """The JSON-ready description printed by ``infinity-train describe``."""
    schedule = geometry.scale_schedule(resolution, h_div_w)
    params = parameter_counts(shape)
    forward = forward_flops_per_image(shape, schedule, text_tokens)
    tokens = geometry.num_tokens(schedule)
    return {
        "shape": asdict(shape) | {"ffn_hidden": shape.ffn_hidden, "head_dim": shape.width // shape.heads},
        "parameters": params,
        "schedule": {
            "resolution": resolution,
            "h_div_w": h_div_w,
            "pixels": list(geometry.pixel_size(resolution, h_div_w)),
            "scales": [list(hw) for hw in schedule],
            "tokens_per_image": tokens,
            "attended_pairs": geometry.attended_pairs(schedule),
            "text_tokens": text_tokens,
        },
        "flops_per_image": {
            "forward": forward,
            "train": 3 * forward["forward_total"],
            "train_6ND_estimate": 6 * params["non_embedding"] * tokens,
        },
    }


def shape_from_config(cfg: "TrainConfig") -> TransformerShape:
    from infinity_train.config.text_encoders import resolve_text_encoder

    width, heads = family_shape(cfg.model.depth, cfg.model.width, cfg.model.heads)
    text = resolve_text_encoder(cfg.model.text_encoder)
    return TransformerShape(
        depth=cfg.model.depth,
        width=width,
        heads=heads,
        bits=geometry.bits_per_token(cfg.tokenizer.d, cfg.tokenizer.patchify),
        text_dim=text.dim,
        text_max_len=text.max_length,
        mlp_ratio=cfg.model.mlp_ratio,
        max_scales=cfg.model.max_scales,
    )


def describe_config(cfg: "TrainConfig") -> dict:
    """``describe`` for a validated run config: its model, tokenizer bits, text encoder and sizes."""
    from infinity_train.config.text_encoders import resolve_text_encoder

    text = resolve_text_encoder(cfg.model.text_encoder)
    aspect = cfg.data.aspect_ratios[0] if cfg.data.aspect_ratios else 1.0
    shape = shape_from_config(cfg)
    described = describe(shape, cfg.data.resolution, min(cfg.data.caption_tokens, text.max_length), aspect)
    pool_heads = cfg.model.text_pool_heads or release_text_pool_heads(shape.text_dim, shape.width)
    described["shape"]["text_pool_heads"] = pool_heads
    return {"model": cfg.model.name, "tokenizer_bits": cfg.tokenizer.d, "text_encoder": text.name, **described}
