"""Token layout of a next-scale sequence: scales are flattened row-major and concatenated."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from infinity_train.geometry import Schedule


def as_schedule(schedule: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """A hashable ``((h, w), ...)`` copy of ``schedule``; the first scale must be the 1x1 start token."""
    normalized = tuple((int(h), int(w)) for h, w in schedule)
    if not normalized:
        raise ValueError("a scale schedule needs at least one scale")
    if normalized[0] != (1, 1):
        raise ValueError(f"the first scale must be (1, 1) (the start token), got {normalized[0]}")
    if any(h < 1 or w < 1 for h, w in normalized):
        raise ValueError(f"scale grids must be positive, got {normalized}")
    return normalized


def scale_lengths(schedule: Schedule) -> tuple[int, ...]:
    return tuple(h * w for h, w in schedule)


def scale_offsets(schedule: Schedule) -> tuple[int, ...]:
    """Start index of every scale in the sequence, plus the total length at the end."""
    offsets = [0]
    for length in scale_lengths(schedule):
        offsets.append(offsets[-1] + length)
    return tuple(offsets)


@lru_cache(maxsize=128)
def _token_scale_ids_cpu(schedule: Schedule) -> torch.Tensor:
    lengths = torch.tensor(scale_lengths(schedule))
    return torch.repeat_interleave(torch.arange(len(schedule)), lengths)


def token_scale_ids(schedule: Schedule, device: torch.device | str = "cpu") -> torch.Tensor:
    """(L,) long: the scale index of every token."""
    return _token_scale_ids_cpu(schedule).to(device)
