"""Attention backends: PyTorch SDPA, FlexAttention and flash-attn, behind three functional entry points.

Layouts: queries, and the keys/values of self-attention, are (B, H, L, head_dim); packed text
keys/values are (total_tokens, H, head_dim) with ``cu_seqlens`` (B + 1,) int32 boundaries.

- ``block_causal_attention``: training self-attention; a token of scale k sees scales <= k.
- ``cached_attention``: incremental inference; the queries of one scale see every cached key.
- ``packed_cross_attention``: queries of sample b see only sample b's text tokens.

``plan_attention`` turns the model's ``attention`` setting into one backend per entry point for a
device, falling back (and logging why) when a backend cannot serve it. ``prepare_block_causal`` and
``prepare_packed_text`` build the masks / padding indices of a backend once per forward.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, Callable

import torch
import torch.nn.functional as F

from infinity_train.geometry import Schedule
from infinity_train.models.layout import token_scale_ids

logger = logging.getLogger(__name__)

ATTENTION_SETTINGS = ("auto", "sdpa", "flex", "flash")


@dataclass(frozen=True)
class AttentionPlan:
    block_causal: str
    cached: str
    packed_cross: str


@lru_cache(maxsize=1)
def flash_attn_module() -> ModuleType | None:
    """The ``flash_attn`` package, or None where it is not installed or fails to import."""
    try:
        import flash_attn
    except Exception:  # a broken CUDA build raises more than ImportError
        return None
    return flash_attn


@lru_cache(maxsize=1)
def flex_attention_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def plan_attention(setting: str, device: torch.device | str) -> AttentionPlan:
    """The backend of each attention entry point for ``setting`` on ``device`` (logged once)."""
    return _plan_attention(setting, torch.device(device).type)


@lru_cache(maxsize=None)
def _plan_attention(setting: str, device_type: str) -> AttentionPlan:
    if setting not in ATTENTION_SETTINGS:
        raise ValueError(f"attention must be one of {ATTENTION_SETTINGS}, got {setting!r}")
    cuda = device_type == "cuda"
    flex_ok = flex_attention_available()
    flash_ok = cuda and flash_attn_module() is not None
    flash_missing = "flash-attn needs CUDA" if not cuda else "flash_attn is not importable"
    fallbacks: list[str] = []

    if setting == "sdpa":
        plan = AttentionPlan("sdpa", "sdpa", "sdpa")
    elif setting == "auto":
        if not cuda:
            plan = AttentionPlan("sdpa", "sdpa", "sdpa")
        else:
            plan = AttentionPlan("flex" if flex_ok else "sdpa", "flash" if flash_ok else "sdpa", "flash" if flash_ok else "sdpa")
    elif setting == "flex":
        if not flex_ok:
            plan = AttentionPlan("sdpa", "sdpa", "sdpa")
            fallbacks.append(f"FlexAttention is not in torch {torch.__version__}: using sdpa everywhere")
        else:
            plan = AttentionPlan("flex", "sdpa", "flex")
            fallbacks.append("cached inference has no mask, so it uses sdpa rather than flex")
            if not cuda:
                fallbacks.append(f"flex on {device_type} runs the unfused eager kernel (materializes scores): tests/debug only")
    else:  # flash
        block = "flex" if cuda and flex_ok else "sdpa"
        fallbacks.append(f"flash-attn cannot apply a block-causal mask: self-attention uses {block}")
        if flash_ok:
            plan = AttentionPlan(block, "flash", "flash")
        else:
            plan = AttentionPlan(block, "sdpa", "sdpa")
            fallbacks.append(f"{flash_missing}: cached and cross-attention use sdpa")

    message = f"attention={setting!r} on {device_type}: {plan}"
    if fallbacks:
        logger.warning("%s; %s", message, "; ".join(fallbacks))
    else:
        logger.info(message)
    return plan


# ----------------------------------------------------------------------------- layouts
# Masks and padding indices are prepared once per forward, outside the blocks, and passed down:
# every layer reuses them, and a per-block torch.compile sees them as plain inputs.


@dataclass(frozen=True)
class BlockCausalLayout:
    """What block-causal self-attention over one schedule needs on one backend."""

    schedule: Schedule
    backend: str
    dense: torch.Tensor | None  # (L, L) bool for sdpa
    block_mask: Any | None  # flex BlockMask


@dataclass(frozen=True)
class PackedTextLayout:
    """What attention of ``q_len`` queries per sample over packed text needs on one backend."""

    cu_seqlens: torch.Tensor
    max_seqlen: int
    q_len: int
    backend: str
    sample: torch.Tensor | None = None  # (total,) sample of every packed token (sdpa padding)
    position: torch.Tensor | None = None  # (total,) its position inside the sample
    valid: torch.Tensor | None = None  # (B, 1, 1, max_seqlen) bool, real (not padded) keys
    block_mask: Any | None = None  # flex BlockMask over (B * q_len) x total


@lru_cache(maxsize=32)
def block_causal_mask(schedule: Schedule, device: torch.device) -> torch.Tensor:
    """(L, L) bool, True where query i may attend to key j (scale(j) <= scale(i))."""
    ids = token_scale_ids(schedule, device)
    return ids[:, None] >= ids[None, :]


@lru_cache(maxsize=32)
def _block_causal_block_mask(schedule: Schedule, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    ids = token_scale_ids(schedule, device)

    def visible(batch, head, q_idx, kv_idx):
        return ids[q_idx] >= ids[kv_idx]

    length = ids.numel()
    return create_block_mask(visible, B=None, H=None, Q_LEN=length, KV_LEN=length, device=device)


def prepare_block_causal(schedule: Schedule, backend: str, device: torch.device | str) -> BlockCausalLayout:
    device = torch.device(device)
    if backend == "sdpa":
        return BlockCausalLayout(schedule, backend, block_causal_mask(schedule, device), None)
    if backend == "flex":
        return BlockCausalLayout(schedule, backend, None, _block_causal_block_mask(schedule, device))
    raise ValueError(f"no block-causal attention on backend {backend!r} (use 'sdpa' or 'flex')")


def prepare_packed_text(cu_seqlens: torch.Tensor, max_seqlen: int, total: int, q_len: int, backend: str) -> PackedTextLayout:
    """Layout for queries (B, H, q_len, hd) over ``total`` packed tokens (every sample needs >= 1 token)."""
    if backend == "flash":
        return PackedTextLayout(cu_seqlens.to(torch.int32), max_seqlen, q_len, backend)
    cu = cu_seqlens.long()
    lengths = cu[1:] - cu[:-1]
    sample = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu.device), lengths, output_size=total)
    if backend == "sdpa":
        position = torch.arange(total, device=cu.device) - cu[sample]
        valid = torch.arange(max_seqlen, device=cu.device)[None, :] < lengths[:, None]
        return PackedTextLayout(cu_seqlens, max_seqlen, q_len, backend, sample, position, valid[:, None, None, :])
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask

        q_sample = torch.arange(lengths.numel(), device=cu.device).repeat_interleave(q_len)

        def same_sample(batch, head, q_idx, kv_idx):
            return q_sample[q_idx] == sample[kv_idx]

        mask = create_block_mask(same_sample, B=None, H=None, Q_LEN=q_sample.numel(), KV_LEN=total, device=cu.device)
        return PackedTextLayout(cu_seqlens, max_seqlen, q_len, backend, sample=sample, block_mask=mask)
    raise ValueError(f"unknown attention backend {backend!r}")


# ----------------------------------------------------------------------------- kernels


_compiled_flex: Callable | None = None


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask, scale: float) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    if q.is_cuda:
        global _compiled_flex
        if _compiled_flex is None:  # flex is only fused (and memory-efficient) when compiled
            # default dynamic: after a second sequence length the kernel is recompiled once with dynamic
            # shapes instead of once per schedule (which would hit dynamo's recompile limit)
            _compiled_flex = torch.compile(flex_attention)
        return _compiled_flex(q, k, v, block_mask=block_mask, scale=scale)
    if not torch.is_grad_enabled():  # CPU flex refuses inputs that require grad, even under no_grad
        q, k, v = q.detach(), k.detach(), v.detach()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return flex_attention(q, k, v, block_mask=block_mask, scale=scale)


@lru_cache(maxsize=None)
def _log_flex_backward_fallback(device_type: str) -> None:
    logger.warning("FlexAttention has no backward on %s in torch %s: attention that needs gradients uses sdpa", device_type, torch.__version__)


def _flex_can_run(*tensors: torch.Tensor) -> bool:
    """False where gradients are needed on a device whose FlexAttention has no backward (CPU)."""
    if tensors[0].is_cuda or not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return True
    _log_flex_backward_fallback(tensors[0].device.type)
    return False


def _to_flash_dtype(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t if t.dtype in (torch.float16, torch.bfloat16) else t.to(torch.bfloat16) for t in tensors]


def block_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BlockCausalLayout, scale: float) -> torch.Tensor:
    """Self-attention over a whole schedule's sequence; (B, H, L, head_dim) in and out."""
    if layout.backend == "flex":
        if _flex_can_run(q, k, v):
            return _flex(q, k, v, layout.block_mask, scale)
        layout = prepare_block_causal(layout.schedule, "sdpa", q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=layout.dense, scale=scale)


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str, scale: float) -> torch.Tensor:
    """Unmasked attention of new queries (B, H, Lq, hd) over all keys/values so far (B, H, Lk, hd)."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if backend == "flash":
        flash = flash_attn_module()
        fq, fk, fv = _to_flash_dtype(*(t.transpose(1, 2) for t in (q, k, v)))
        return flash.flash_attn_func(fq, fk, fv, softmax_scale=scale).transpose(1, 2).to(q.dtype)
    raise ValueError(f"no cached attention on backend {backend!r} (use 'sdpa' or 'flash')")


def packed_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: PackedTextLayout, scale: float) -> torch.Tensor:
    """Queries (B, H, q_len, hd) over packed keys/values (total, H, hd) -> (B, H, q_len, hd)."""
    batch, heads, q_len, head_dim = q.shape
    if q_len != layout.q_len:
        raise ValueError(f"layout was prepared for {layout.q_len} queries per sample, got {q_len}")
    if layout.backend == "flex" and not _flex_can_run(q, k, v):
        layout = prepare_packed_text(layout.cu_seqlens, layout.max_seqlen, k.shape[0], q_len, "sdpa")
    if layout.backend == "sdpa":
        index = (layout.sample, layout.position)
        padded_k = k.new_zeros(batch, layout.max_seqlen, heads, head_dim).index_put(index, k)
        padded_v = v.new_zeros(batch, layout.max_seqlen, heads, head_dim).index_put(index, v)
        return F.scaled_dot_product_attention(q, padded_k.transpose(1, 2), padded_v.transpose(1, 2), attn_mask=layout.valid, scale=scale)
    if layout.backend == "flex":
        flat_q = q.transpose(0, 1).reshape(1, heads, batch * q_len, head_dim)
        out = _flex(flat_q, k.transpose(0, 1)[None], v.transpose(0, 1)[None], layout.block_mask, scale)
        return out.view(heads, batch, q_len, head_dim).transpose(0, 1)
    if layout.backend == "flash":
        flash = flash_attn_module()
        flat_q = q.transpose(1, 2).reshape(batch * q_len, heads, head_dim)
        fq, fk, fv = _to_flash_dtype(flat_q, k, v)
        cu_q = torch.arange(0, (batch + 1) * q_len, q_len, dtype=torch.int32, device=q.device)
        out = flash.flash_attn_varlen_func(fq, fk, fv, cu_q, layout.cu_seqlens, q_len, layout.max_seqlen, softmax_scale=scale)
        return out.view(batch, q_len, heads, head_dim).transpose(1, 2).to(q.dtype)
    raise ValueError(f"unknown attention backend {layout.backend!r}")
