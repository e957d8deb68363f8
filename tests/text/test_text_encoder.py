"""TextEncoder behaviour on the in-code tiny T5: packing, truncation, freezing, determinism, precision."""

from __future__ import annotations

import pytest
import torch

from infinity_train.text import TextEncoder

CAPTIONS = ["a red cube on a table", "", "two cats", "a very long caption " * 10]


def test_packed_tokens_equal_unpadded_rows_of_padded_forward(tiny_t5: TextEncoder) -> None:
    packed = tiny_t5.encode(CAPTIONS)
    batch = tiny_t5.tokenizer(CAPTIONS, padding=True, truncation=True, max_length=tiny_t5.max_length,
                              return_tensors="pt")
    with torch.no_grad():
        padded = tiny_t5.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert packed.lengths.tolist() == batch["attention_mask"].sum(1).tolist()
    torch.testing.assert_close(packed.tokens, padded[batch["attention_mask"].bool()], rtol=0, atol=1e-5)


def test_batching_does_not_change_tokens(tiny_t5: TextEncoder) -> None:
    packed = tiny_t5.encode(CAPTIONS)
    alone = [tiny_t5.encode([caption]).tokens for caption in CAPTIONS]
    for part, single in zip(packed.split(), alone):
        torch.testing.assert_close(part, single, rtol=0, atol=1e-5)
    chunked = tiny_t5.encode(CAPTIONS, batch_size=3)
    assert torch.equal(chunked.cu_seqlens, packed.cu_seqlens)
    torch.testing.assert_close(chunked.tokens, packed.tokens, rtol=0, atol=1e-5)


def test_empty_caption_and_truncation(tiny_t5: TextEncoder) -> None:
    packed = tiny_t5.encode(["", "abc", "x" * 500])
    # "" -> just </s>; "abc" -> 3 bytes + </s>; the long caption is cut at max_length.
    assert packed.lengths.tolist() == [1, 4, tiny_t5.max_length]
    assert packed.max_seqlen == tiny_t5.max_length
    assert packed.tokens.shape == (1 + 4 + tiny_t5.max_length, tiny_t5.hidden_dim)


def test_max_length_override() -> None:
    encoder = TextEncoder.from_config("tiny-t5", max_length=8)
    assert encoder.max_length == 8
    assert encoder.encode(["a caption longer than eight bytes"]).lengths.tolist() == [8]


def test_same_seed_builds_identical_encoder() -> None:
    state = torch.random.get_rng_state()
    first = TextEncoder.from_config("tiny-t5", seed=3).encode(CAPTIONS)
    second = TextEncoder.from_config("tiny-t5", seed=3).encode(CAPTIONS)
    other = TextEncoder.from_config("tiny-t5", seed=4).encode(CAPTIONS)
    assert torch.equal(first.tokens, second.tokens)
    assert not torch.allclose(first.tokens, other.tokens)
    assert torch.equal(torch.random.get_rng_state(), state), "building must not consume the global RNG"


def test_encoder_is_frozen_and_builds_no_graph(tiny_t5: TextEncoder) -> None:
    assert not tiny_t5.model.training
    assert not any(parameter.requires_grad for parameter in tiny_t5.model.parameters())
    assert not isinstance(tiny_t5, torch.nn.Module)
    with torch.enable_grad():
        packed = tiny_t5.encode(CAPTIONS[:2])
    assert not packed.tokens.requires_grad and packed.tokens.grad_fn is None
    # The embeddings feed a trainable projection whose backward must work.
    assert not packed.tokens.is_inference()
    projection = torch.nn.Linear(tiny_t5.hidden_dim, 3)
    projection(packed.tokens).sum().backward()
    assert projection.weight.grad is not None


def test_properties_and_dtype(tiny_t5: TextEncoder) -> None:
    assert tiny_t5.hidden_dim == 64 and tiny_t5.max_length == 64
    assert tiny_t5.dtype == torch.float32 and tiny_t5.device.type == "cpu"  # 'auto' on CPU
    bf16 = TextEncoder.from_config("tiny-t5", dtype="bf16")
    assert bf16.dtype == torch.bfloat16 and bf16.encode(["hi"]).tokens.dtype == torch.bfloat16


def test_enclosing_autocast_does_not_change_precision(tiny_t5: TextEncoder) -> None:
    reference = tiny_t5.encode(CAPTIONS[:2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = tiny_t5.encode(CAPTIONS[:2])
    assert inside.tokens.dtype == torch.float32
    torch.testing.assert_close(inside.tokens, reference.tokens, rtol=0, atol=1e-6)


def test_bad_inputs_are_rejected(tiny_t5: TextEncoder) -> None:
    with pytest.raises(TypeError):
        tiny_t5.encode("a single string")
    with pytest.raises(ValueError):
        tiny_t5.encode([])
    with pytest.raises(ValueError, match="takes no path"):
        TextEncoder.from_config("tiny-t5", path="/tmp")
    with pytest.raises(ValueError, match="dtype"):
        TextEncoder.from_config("tiny-t5", dtype="fp8")
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        TextEncoder.from_config("tiny-t5", max_length=0)
