from __future__ import annotations

import pytest
import torch

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer
from tokenizer_helpers import tiny_tokenizer


@pytest.fixture(autouse=True)
def single_thread():
    """These tests use tiny tensors: one intra-op thread is much faster than two on a shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tokenizer16() -> BitwiseTokenizer:
    return tiny_tokenizer(16)
