from __future__ import annotations

import pytest
import torch

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer
from tokenizer_helpers import tiny_tokenizer


@pytest.fixture(autouse=True)
def _tiny_models_one_thread(single_thread):
    """Every test here uses tiny tensors (see ``single_thread`` in tests/conftest.py)."""


@pytest.fixture
def tokenizer16() -> BitwiseTokenizer:
    return tiny_tokenizer(16)
