"""Finding the tensors in a loaded checkpoint object: the state dict under the usual wrapper keys, with the
prefixes DDP, FSDP and torch.compile add to parameter names stripped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

STRIPPED_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def find_state_dict(obj: Any, wrapper_keys: Sequence[str], what: str, error: type[Exception] = ValueError) -> dict[str, torch.Tensor]:
    """The first tensor dict reached through ``wrapper_keys`` (tried in order at every level), keys stripped of
    ``STRIPPED_PREFIXES``; ``error(...)`` with one line naming ``what`` and the keys found when there is none."""
    while isinstance(obj, Mapping) and not is_state_dict(obj):
        inner = next((obj[k] for k in wrapper_keys if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise error(
                f"{what}: no state dict found (top-level keys {sorted(map(str, obj))[:8]}; "
                f"expected tensors or a dict under one of {', '.join(wrapper_keys)})"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise error(f"{what} holds a {type(obj).__name__}, not a state dict")
    state = {}
    for key, value in obj.items():
        key = str(key)
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value
    return state
