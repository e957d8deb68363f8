"""The text encoder's compute dtype from a config string."""

from __future__ import annotations

import torch

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | str) -> torch.dtype:
    """'auto' = bf16 on CUDA, fp32 elsewhere; otherwise one of fp32/fp16/bf16 (or their torch names)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"text encoder dtype must be fp32, fp16 or bf16, got {dtype}")
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"text encoder dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}") from None
