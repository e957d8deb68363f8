"""Frozen text encoders and the packed variable-length text embeddings they produce.

Only the registry is imported eagerly (configs read it without torch); ``PackedText`` and
``pack_embeddings`` import torch, and the encoder side (transformers) is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from infinity_train.text.registry import KNOWN_TEXT_ENCODERS, TextEncoderSpec, lookup_text_encoder

if TYPE_CHECKING:
    from infinity_train.text.packed import PackedText, pack_embeddings
    from infinity_train.text.precision import resolve_dtype
    from infinity_train.text.encoder import TextEncoder
    from infinity_train.text.tiny_t5 import build_byte_tokenizer, build_tiny_t5
    from infinity_train.text.weights import minilm_package_dir, resolve_weights_dir

    from_config = TextEncoder.from_config

_LAZY = {
    "PackedText": "infinity_train.text.packed",
    "pack_embeddings": "infinity_train.text.packed",
    "resolve_dtype": "infinity_train.text.precision",
    "TextEncoder": "infinity_train.text.encoder",
    "build_byte_tokenizer": "infinity_train.text.tiny_t5",
    "build_tiny_t5": "infinity_train.text.tiny_t5",
    "minilm_package_dir": "infinity_train.text.weights",
    "resolve_weights_dir": "infinity_train.text.weights",
}


def __getattr__(name: str) -> Any:
    if name == "from_config":
        return __getattr__("TextEncoder").from_config
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KNOWN_TEXT_ENCODERS",
    "PackedText",
    "TextEncoder",
    "TextEncoderSpec",
    "build_byte_tokenizer",
    "build_tiny_t5",
    "from_config",
    "lookup_text_encoder",
    "minilm_package_dir",
    "pack_embeddings",
    "resolve_dtype",
    "resolve_weights_dir",
]
