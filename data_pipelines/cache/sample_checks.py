"""Checking a cached sample before it is bucketed: its json, its tensors' dtypes and shapes, and
that it was cached for this reader's resolution, aspect templates and (when known) models.

The tensors are small (a latent grid and caption tokens), so they are fully loaded here; a sample
that passes can always be batched, and a resumed reader replays exactly the same decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_pipelines.reader.metadata import MetadataError, caption_fields, parse_json_object
from data_pipelines.reader.stats import ReaderCounters
from data_pipelines.reader.tar_stream import RawSample
from infinity_train.geometry import resolve_template, scale_schedule

from .members import BITS_MEMBER, LATENT_MEMBER, TENSOR_MEMBERS, TEXT_MEMBER, decode_tensors, packed_length


@dataclass(frozen=True)
class CacheSignature:
    """What every sample of one reader must share: the tokenizer's latent and token widths and the
    text encoder's width (the manifest's params record them)."""

    latent_channels: int
    token_dim: int
    text_dim: int


@dataclass(frozen=True)
class CachedSample:
    key: str
    url: str
    template: float
    long_caption: str
    short_caption: str | None
    spec: dict[str, Any] | None
    latent: np.ndarray  # (d, H, W) float16
    packed_bits: np.ndarray  # uint8
    bits_shapes: tuple[tuple[int, int, int], ...]
    text_long: np.ndarray  # (len, Dt) float16
    text_short: np.ndarray | None  # None when the short caption is absent or equals the long one


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def prepare_cached_sample(
    raw: RawSample,
    templates: Sequence[float],
    counters: ReaderCounters,
    resolution: int,
    signature: CacheSignature | None = None,
) -> CachedSample | None:
    """The checked sample, or None (counted under its skip reason)."""
    where = f"{raw['__url__']} sample {raw['__key__']!r}"
    try:
        return _checked(raw, templates, resolution, signature)
    except (_Rejected, MetadataError) as error:
        counters.skip(error.reason, where, str(error))
        return None


def _checked(raw: RawSample, templates: Sequence[float], resolution: int, signature: CacheSignature | None) -> CachedSample:
    if "json" not in raw:
        raise _Rejected("missing_json", "no .json member")
    metadata = parse_json_object(raw["json"])
    captions = caption_fields(metadata)
    missing = [name for name in TENSOR_MEMBERS if name not in raw]
    if missing:
        raise _Rejected("missing_tensor", f"no {', '.join(missing)}")
    template, schedule, bits_shapes, latent_shape = _declared_shapes(metadata)
    if template not in templates or schedule != scale_schedule(resolution, template):
        raise _Rejected("cache_mismatch", f"cached for template {template} with schedule {list(schedule)}; this reader wants resolution {resolution}, templates {list(templates)}")
    texts, latent, packed = (_load(raw, name) for name in (TEXT_MEMBER, LATENT_MEMBER, BITS_MEMBER))
    text_long, text_short = _text_arrays(texts, captions.long, captions.short)
    _expect(latent.get("latent"), np.float16, tuple(latent_shape), "latent")
    bits = packed.get("bits")
    _expect(bits, np.uint8, (packed_length(bits_shapes),), "bits")
    _check_grids(bits_shapes, latent_shape, schedule)
    if signature is not None:
        found = CacheSignature(latent_shape[0], bits_shapes[0][2], text_long.shape[1])
        if found != signature:
            raise _Rejected("cache_mismatch", f"{found} differs from the cache's {signature}")
    if not (np.isfinite(latent["latent"]).all() and np.isfinite(text_long).all()):
        raise _Rejected("bad_tensor", "non-finite latent or text values")
    spec = metadata.get("spec")
    return CachedSample(
        key=raw["__key__"],
        url=raw["__url__"],
        template=template,
        long_caption=captions.long,
        short_caption=captions.short,
        spec=spec if isinstance(spec, dict) else None,
        latent=latent["latent"],
        packed_bits=bits,
        bits_shapes=bits_shapes,
        text_long=text_long,
        text_short=text_short,
    )


def _declared_shapes(
    metadata: dict[str, Any],
) -> tuple[float, tuple[tuple[int, int], ...], tuple[tuple[int, int, int], ...], list[int]]:
    try:
        template = resolve_template(float(metadata["h_div_w"]))
        schedule = tuple((int(h), int(w)) for h, w in metadata["schedule"])
        bits_shapes = tuple((int(h), int(w), int(c)) for h, w, c in metadata["bits_shapes"])
        latent_shape = [int(n) for n in metadata["latent_shape"]]
    except (KeyError, TypeError, ValueError) as error:
        raise _Rejected("bad_json", f"cache json lacks a valid h_div_w, schedule, bits_shapes or latent_shape: {error!r}") from None
    if len(latent_shape) != 3 or min(latent_shape) < 1 or not bits_shapes or min(min(s) for s in bits_shapes) < 1:
        raise _Rejected("bad_json", f"invalid latent_shape {latent_shape} or bits_shapes {bits_shapes}")
    return template, schedule, bits_shapes, latent_shape


def _load(raw: RawSample, member: str) -> dict[str, np.ndarray]:
    try:
        return decode_tensors(raw[member])
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged data
        raise _Rejected("bad_tensor", f"{member} is not a readable safetensors file: {error}") from None


def _expect(array: np.ndarray | None, dtype: type, shape: tuple[int, ...], name: str) -> None:
    if array is None or array.dtype != dtype or array.shape != shape:
        found = "missing" if array is None else f"{array.dtype} {array.shape}"
        raise _Rejected("bad_tensor", f"{name} is {found}, expected {np.dtype(dtype)} {shape}")


def _text_arrays(texts: dict[str, np.ndarray], long: str, short: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    text_long = texts.get("long")
    if text_long is None or text_long.dtype != np.float16 or text_long.ndim != 2 or text_long.shape[0] < 1:
        raise _Rejected("bad_tensor", "text 'long' must be (len >= 1, Dt) float16")
    text_short = texts.get("short")
    if short is not None and short != long:
        if text_short is None or text_short.dtype != np.float16 or text_short.ndim != 2 or text_short.shape[0] < 1 or text_short.shape[1] != text_long.shape[1]:
            raise _Rejected("bad_tensor", "text 'short' must be (len >= 1, Dt) float16 like 'long'")
        if not np.isfinite(text_short).all():
            raise _Rejected("bad_tensor", "non-finite short text values")
    else:
        text_short = None
    return text_long, text_short


def _check_grids(bits_shapes: Sequence[tuple[int, int, int]], latent_shape: Sequence[int], schedule: Sequence[tuple[int, int]]) -> None:
    """Bits grids are the token schedule; the latent is the last grid times 1 (or 2 with patchify)."""
    if [s[:2] for s in bits_shapes] != [tuple(g) for g in schedule]:
        raise _Rejected("cache_mismatch", f"bits grids {[s[:2] for s in bits_shapes]} are not the schedule {list(schedule)}")
    channels = {s[2] for s in bits_shapes}
    last_h, last_w = schedule[-1]
    factor = latent_shape[1] // last_h
    if (
        len(channels) != 1
        or factor not in (1, 2)
        or latent_shape[1:] != [last_h * factor, last_w * factor]
        or channels.pop() != latent_shape[0] * factor * factor
    ):
        raise _Rejected("bad_tensor", f"latent {latent_shape} does not fit bits {list(bits_shapes)}")
