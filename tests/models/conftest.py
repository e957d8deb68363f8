"""Shared builders for the transformer tests: tiny models, random packed text, teacher-forcing inputs."""

from __future__ import annotations

import math

import pytest
import torch

from infinity_train.models.infinity import InfinityTransformer
from infinity_train.text.packed import PackedText, pack_embeddings

TEXT_DIM = 32
TEXT_MAX_LEN = 6


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the near-zero reference init (gates ~5e-6) by O(1) random weights, so that every
    branch of every block really contributes and parity/causality tests are not trivially met."""
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        if param.dim() >= 2 and param.shape[-1] > 1:
            param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(param.shape[-1]))
        else:
            param.add_(0.2 * torch.randn(param.shape, generator=generator))
    model.head.weight.mul_(0.25)  # logits of a few units: fp32 parity at 1e-5 keeps a safety margin
    return model


def build_model(width: int = 64, depth: int = 2, heads: int = 2, bits: int = 8, attention: str = "sdpa", randomize: bool = True, **kwargs) -> InfinityTransformer:
    kwargs.setdefault("drop_path", 0.0)
    kwargs.setdefault("cond_drop", 0.0)
    kwargs.setdefault("text_pool_heads", heads)  # TEXT_DIM 32 / 128 heads (the release's rule) would be 0
    torch.manual_seed(0)
    model = InfinityTransformer(width, depth, heads, bits, TEXT_DIM, TEXT_MAX_LEN, attention=attention, **kwargs)
    if randomize:
        randomize_(model)
    return model.eval()


def random_text(lengths: list[int], seed: int = 1, dim: int = TEXT_DIM) -> PackedText:
    generator = torch.Generator().manual_seed(seed)
    return pack_embeddings([torch.randn(n, dim, generator=generator) for n in lengths])


def random_inputs(batch: int, schedule, bits: int, seed: int = 2) -> torch.Tensor:
    length = sum(h * w for h, w in schedule)
    return torch.randn(batch, length - 1, bits, generator=torch.Generator().manual_seed(seed)) / math.sqrt(bits)


@pytest.fixture
def make_model():
    return build_model


@pytest.fixture
def make_text():
    return random_text


@pytest.fixture
def make_inputs():
    return random_inputs


@pytest.fixture(autouse=True)
def _tiny_models_one_thread(single_thread):
    """Every test here uses tiny tensors (see ``single_thread`` in tests/conftest.py)."""
