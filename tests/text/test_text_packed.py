from __future__ import annotations

import pytest
import torch

from infinity_train.text import PackedText, pack_embeddings


def _right_padded(lengths: list[int], dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    padded = torch.randn(len(lengths), max(lengths), dim, generator=generator) * mask[..., None]
    return padded, mask


def test_from_padded_keeps_real_tokens_in_order() -> None:
    padded, mask = _right_padded([3, 1, 4])
    packed = PackedText.from_padded(padded, mask.long())
    assert packed.cu_seqlens.dtype == torch.int32
    assert packed.cu_seqlens.tolist() == [0, 3, 4, 8]
    assert packed.lengths.tolist() == [3, 1, 4]
    assert packed.max_seqlen == 4 and packed.batch_size == len(packed) == 3 and packed.dim == 5
    assert torch.equal(packed.tokens[3], padded[1, 0])
    assert torch.equal(packed.tokens[4:8], padded[2])


def test_padded_round_trip() -> None:
    padded, mask = _right_padded([2, 5, 1, 5])
    restored, restored_mask = PackedText.from_padded(padded, mask).to_padded()
    assert torch.equal(restored, padded)
    assert torch.equal(restored_mask, mask)


def test_to_padded_fills_pad_value() -> None:
    packed = pack_embeddings([torch.ones(1, 2), torch.ones(3, 2)])
    padded, mask = packed.to_padded(pad_value=-7.0)
    assert padded.shape == (2, 3, 2)
    assert torch.all(padded[0, 1:] == -7.0) and torch.all(padded[mask] == 1.0)


def test_split_returns_each_sample() -> None:
    samples = [torch.randn(n, 3) for n in (2, 1, 4)]
    parts = pack_embeddings(samples).split()
    assert len(parts) == 3
    for part, sample in zip(parts, samples):
        assert torch.equal(part, sample)


def test_pack_embeddings_keeps_fp16_and_lengths() -> None:
    samples = [torch.randn(n, 8).half() for n in (5, 2)]
    packed = pack_embeddings(samples)
    assert packed.dtype == torch.float16
    assert packed.cu_seqlens.tolist() == [0, 5, 7] and packed.max_seqlen == 5
    assert torch.equal(packed.tokens, torch.cat(samples))


def test_cat_offsets_second_batch_for_cfg_doubling() -> None:
    cond = pack_embeddings([torch.randn(n, 4) for n in (3, 2)])
    uncond = pack_embeddings([torch.randn(n, 4) for n in (1, 6)])
    doubled = cond + uncond
    assert doubled.cu_seqlens.tolist() == [0, 3, 5, 6, 12]
    assert doubled.max_seqlen == 6 and doubled.batch_size == 4
    for part, expected in zip(doubled.split(), cond.split() + uncond.split()):
        assert torch.equal(part, expected)
    assert torch.equal(PackedText.cat([cond, uncond]).tokens, doubled.tokens)


def test_cat_rejects_mismatched_dtype() -> None:
    a = pack_embeddings([torch.randn(2, 4)])
    with pytest.raises(ValueError, match="dtype"):
        a + a.to(dtype=torch.float16)


def test_to_casts_tokens_only() -> None:
    packed = pack_embeddings([torch.randn(2, 4)]).to("cpu", dtype=torch.bfloat16)
    assert packed.dtype == torch.bfloat16 and packed.cu_seqlens.dtype == torch.int32


def test_empty_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        pack_embeddings([torch.randn(2, 4), torch.randn(0, 4)])
    padded, mask = _right_padded([2, 2])
    mask[1] = False
    with pytest.raises(ValueError, match="no tokens"):
        PackedText.from_padded(padded, mask)


def test_invalid_layouts_are_rejected() -> None:
    with pytest.raises(ValueError, match="int32"):
        PackedText(torch.randn(3, 2), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="total_tokens, dim"):
        PackedText(torch.randn(3), torch.tensor([0, 3], dtype=torch.int32), 3)
    with pytest.raises(ValueError, match=r"\(len, 4\)"):
        pack_embeddings([torch.randn(2, 4), torch.randn(2, 5)])
