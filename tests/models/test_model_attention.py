"""Every attention backend available here agrees with a plain softmax implementation."""

from __future__ import annotations

import logging

import pytest
import torch

from infinity_train.models import attention
from infinity_train.models.attention import (
    AttentionPlan,
    block_causal_attention,
    cached_attention,
    flash_attn_module,
    flex_attention_available,
    packed_cross_attention,
    plan_attention,
    prepare_block_causal,
    prepare_packed_text,
)

SCHEDULE = ((1, 1), (2, 2), (3, 2), (4, 3))  # 1 + 4 + 6 + 12 = 23 tokens
ATOL = 1e-5

BACKENDS_HERE = ["sdpa"] + (["flex"] if flex_attention_available() else [])


def softmax_attention(q, k, v, visible, scale):
    scores = (q @ k.transpose(-1, -2)) * scale
    return scores.masked_fill(~visible, float("-inf")).softmax(-1) @ v


def reference_block_causal_mask(schedule) -> torch.Tensor:
    owner = [k for k, (h, w) in enumerate(schedule) for _ in range(h * w)]
    return torch.tensor([[owner[j] <= owner[i] for j in range(len(owner))] for i in range(len(owner))])


def qkv(batch, heads, length, head_dim, seed=0, kv_length=None):
    g = torch.Generator().manual_seed(seed)
    kv_length = kv_length or length
    return (
        torch.randn(batch, heads, length, head_dim, generator=g),
        torch.randn(batch, heads, kv_length, head_dim, generator=g),
        torch.randn(batch, heads, kv_length, head_dim, generator=g),
    )


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_block_causal_attention_matches_softmax(backend):
    q, k, v = qkv(2, 3, 23, 16)
    expected = softmax_attention(q, k, v, reference_block_causal_mask(SCHEDULE), scale=0.7)
    out = block_causal_attention(q, k, v, prepare_block_causal(SCHEDULE, backend, q.device), scale=0.7)
    err = (out - expected).abs().max().item()
    assert err < ATOL, f"{backend}: max error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_block_causal_attention_gradients_match_softmax(backend):
    # FlexAttention has no CPU backward: on CPU this checks that the sdpa fallback takes over.
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 23, 8, seed=3))
    reference = softmax_attention(q, k, v, reference_block_causal_mask(SCHEDULE), 1.0)
    expected = torch.autograd.grad(reference.square().sum(), (q, k, v))
    layout = prepare_block_causal(SCHEDULE, backend, q.device)
    got = torch.autograd.grad(block_causal_attention(q, k, v, layout, 1.0).square().sum(), (q, k, v))
    for a, b in zip(got, expected):
        assert (a - b).abs().max().item() < 1e-4


def test_cached_attention_matches_softmax():
    q, k, v = qkv(2, 3, 6, 16, kv_length=11)
    expected = softmax_attention(q, k, v, torch.ones(6, 11, dtype=torch.bool), scale=0.5)
    assert (cached_attention(q, k, v, "sdpa", scale=0.5) - expected).abs().max().item() < ATOL


@pytest.mark.parametrize("backend", BACKENDS_HERE)
@pytest.mark.parametrize("q_len", [1, 7])
def test_packed_cross_attention_matches_per_sample_softmax(backend, q_len):
    lengths = [3, 1, 6]
    heads, head_dim = 2, 8
    g = torch.Generator().manual_seed(4)
    q = torch.randn(len(lengths), heads, q_len, head_dim, generator=g)
    k = torch.randn(sum(lengths), heads, head_dim, generator=g)
    v = torch.randn(sum(lengths), heads, head_dim, generator=g)
    cu = torch.tensor([0, 3, 4, 10], dtype=torch.int32)
    layout = prepare_packed_text(cu, max(lengths), sum(lengths), q_len, backend)
    out = packed_cross_attention(q, k, v, layout, scale=head_dim**-0.5)
    for b in range(len(lengths)):
        kb, vb = (t[cu[b] : cu[b + 1]].transpose(0, 1)[None] for t in (k, v))
        expected = softmax_attention(q[b : b + 1], kb, vb, torch.ones(q_len, lengths[b], dtype=torch.bool), head_dim**-0.5)
        err = (out[b : b + 1] - expected).abs().max().item()
        assert err < ATOL, f"{backend} sample {b}: max error {err:.2e}"


@pytest.mark.skipif(not torch.cuda.is_available() or flash_attn_module() is None, reason="flash-attn needs CUDA and the flash_attn package")
def test_flash_backends_match_softmax_on_cuda():  # pragma: no cover - GPU only
    q, k, v = (t.cuda() for t in qkv(2, 2, 9, 64, kv_length=20))
    expected = softmax_attention(q, k, v, torch.ones(9, 20, dtype=torch.bool, device="cuda"), 0.125)
    assert (cached_attention(q, k, v, "flash", 0.125) - expected).abs().max().item() < 2e-2  # bf16 kernel
    cu = torch.tensor([0, 5, 20], dtype=torch.int32, device="cuda")
    packed_k = torch.cat((k[0, :, :5], k[1, :, :15]), 1).transpose(0, 1)
    packed_v = torch.cat((v[0, :, :5], v[1, :, :15]), 1).transpose(0, 1)
    flash = packed_cross_attention(q, packed_k, packed_v, prepare_packed_text(cu, 15, 20, 9, "flash"), 0.125)
    sdpa = packed_cross_attention(q, packed_k, packed_v, prepare_packed_text(cu, 15, 20, 9, "sdpa"), 0.125)
    assert (flash - sdpa).abs().max().item() < 2e-2


def test_plan_on_cpu_falls_back_to_sdpa_with_a_logged_reason(caplog):
    attention._plan_attention.cache_clear()
    with caplog.at_level(logging.INFO, logger=attention.__name__):
        assert plan_attention("auto", "cpu") == AttentionPlan("sdpa", "sdpa", "sdpa")
        assert plan_attention("flash", "cpu") == AttentionPlan("sdpa", "sdpa", "sdpa")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("flash-attn cannot apply a block-causal mask" in m and "needs CUDA" in m for m in warnings)
    if flex_attention_available():
        assert plan_attention("flex", "cpu") == AttentionPlan("flex", "sdpa", "flex")
    with pytest.raises(ValueError, match="attention must be one of"):
        plan_attention("xformers", "cpu")


@pytest.mark.skipif(not flex_attention_available(), reason="FlexAttention is not in this torch")
def test_model_logits_agree_between_sdpa_and_flex(make_model, make_text, make_inputs):
    schedule = ((1, 1), (2, 2), (3, 3))
    text, inputs = make_text([2, 5]), make_inputs(2, schedule, 8)
    with torch.no_grad():  # no grad: FlexAttention itself runs (its CPU backward does not exist)
        logits = {backend: make_model(attention=backend)(inputs, text, schedule) for backend in ("sdpa", "flex")}
    assert (logits["sdpa"] - logits["flex"]).abs().max().item() < ATOL
