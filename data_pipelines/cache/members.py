"""The members of a cached sample, shared by the cache job (writing) and the cached reader.

A cached shard holds, per sample ``{key}``:

- ``{key}.json``: ``long_caption`` and short ``text`` (the captions that were embedded), ``h_div_w``
  (the aspect template), ``schedule`` (token grids), ``latent_shape`` [d, H, W], ``bits_shapes``
  [[h_k, w_k, token_dim], ...], ``text_dim``, ``spec`` (synthetic data), ``source`` (raw shard and key);
- ``{key}.text.safetensors``: ``long`` (len, Dt) float16, and ``short`` when the short caption differs;
- ``{key}.latent.safetensors``: ``latent`` (d, H, W) float16, the tokenizer's continuous latent F;
- ``{key}.bits.safetensors``: ``bits`` uint8, every scale's (h_k, w_k, token_dim) bits flattened
  row-major, concatenated in scale order and packed with numpy.packbits.

Only safetensors are stored: loading one reads a JSON header and raw little-endian buffers, so
nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

CACHE_VERSION = 1
TEXT_MEMBER = "text.safetensors"
LATENT_MEMBER = "latent.safetensors"
BITS_MEMBER = "bits.safetensors"
TENSOR_MEMBERS = (TEXT_MEMBER, LATENT_MEMBER, BITS_MEMBER)
CACHED_EXTENSIONS = frozenset(("json", *TENSOR_MEMBERS))

Grid = tuple[int, int]


def pack_bits(scales: Sequence[np.ndarray]) -> np.ndarray:
    """Bool arrays (h_k, w_k, c) -> one packed uint8 array."""
    return np.packbits(np.concatenate([np.ascontiguousarray(s, dtype=bool).reshape(-1) for s in scales]))


def packed_length(shapes: Sequence[Sequence[int]]) -> int:
    return math.ceil(sum(math.prod(shape) for shape in shapes) / 8)


def unpack_bits(packed: np.ndarray, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The inverse of pack_bits: bool arrays of ``shapes``."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = np.unpackbits(packed, count=sum(sizes)).astype(bool)
    scales, start = [], 0
    for shape, size in zip(shapes, sizes):
        scales.append(flat[start : start + size].reshape(tuple(shape)))
        start += size
    return scales


def encode_tensors(arrays: Mapping[str, np.ndarray]) -> bytes:
    return save_safetensors({name: np.ascontiguousarray(array) for name, array in arrays.items()})


def decode_tensors(data: bytes) -> dict[str, np.ndarray]:
    return load_safetensors(data)


def cached_sample_files(
    *,
    long_caption: str,
    short_caption: str | None,
    template: float,
    schedule: Sequence[Grid],
    latent: np.ndarray,
    bits: Sequence[np.ndarray],
    text_long: np.ndarray,
    text_short: np.ndarray | None,
    spec: dict[str, Any] | None,
    source: dict[str, str],
) -> dict[str, bytes]:
    """The members of one cached sample; arrays are stored as float16 (latent, text) and packed bits."""
    metadata: dict[str, Any] = {
        "cache_version": CACHE_VERSION,
        "long_caption": long_caption,
        "text": short_caption,
        "h_div_w": template,
        "schedule": [list(grid) for grid in schedule],
        "latent_shape": list(latent.shape),
        "bits_shapes": [list(b.shape) for b in bits],
        "text_dim": int(text_long.shape[1]),
        "source": source,
    }
    if spec is not None:
        metadata["spec"] = spec
    texts = {"long": text_long.astype(np.float16)}
    if text_short is not None:
        texts["short"] = text_short.astype(np.float16)
    return {
        "json": json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        TEXT_MEMBER: encode_tensors(texts),
        LATENT_MEMBER: encode_tensors({"latent": latent.astype(np.float16)}),
        BITS_MEMBER: encode_tensors({"bits": pack_bits(bits)}),
    }
