"""2-D rotary position embedding for next-scale token grids, as the release computes it
(``rope2d_normalized_by_hw=2``).

Row i of a scale with h rows sits at the integer position round(i * H / h) of a *reference grid*
H x W, the final (13th, 1024px) grid of the schedule's aspect template (64 x 64 for 1:1), and
columns likewise; ``round`` is torch's, half to even, on float32 products as in the release. A
scale therefore gets the same positions whatever the training resolution (a 256px schedule is a
prefix of the 1024px one). Half of the head dimension rotates with the row, the other half with
the column; angles and their cos/sin are float32, as in the release's tables.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from infinity_train.geometry import Schedule
from infinity_train.models.layout import scale_offsets
from infinity_train.geometry import TEMPLATES, resolve_template


def rope_reference_grid(schedule: Schedule, h_div_w: float | None = None) -> tuple[int, int]:
    """The grid whose coordinates RoPE positions are expressed in.

    With ``h_div_w`` it is that template's final grid. Otherwise the template is recognized from
    ``schedule`` (which is a prefix of its template). Very short schedules can be a prefix of
    several templates (the 3-scale 64px lists of 1.25 and 1.75 coincide); the template whose final
    aspect is nearest the schedule's last grid wins, ties going to the smaller ratio. A schedule
    that is no template's prefix uses its own last grid.
    """
    if h_div_w is not None:
        return TEMPLATES[resolve_template(h_div_w)][-1]
    candidates = [grids for grids in TEMPLATES.values() if grids[: len(schedule)] == tuple(schedule)]
    if not candidates:
        return tuple(schedule[-1])  # type: ignore[return-value]
    last_h, last_w = schedule[-1]
    target = math.log(last_h / last_w)
    best = min(candidates, key=lambda grids: abs(math.log(grids[-1][0] / grids[-1][1]) - target))
    return best[-1]


def scale_positions(schedule: Schedule, grid: tuple[int, int]) -> torch.Tensor:
    """(L, 2) int64 (row, col) of every token: round(i * H / h), round(j * W / w) on the ``grid`` H x W."""
    grid_h, grid_w = grid
    rows, cols = [], []
    for h, w in schedule:
        r = (torch.arange(h) * (grid_h / h)).round().long()  # float32 product, half-to-even rounding
        c = (torch.arange(w) * (grid_w / w)).round().long()
        rows.append(r[:, None].expand(h, w).reshape(-1))
        cols.append(c[None, :].expand(h, w).reshape(-1))
    return torch.stack((torch.cat(rows), torch.cat(cols)), dim=-1)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(L, head_dim / 2) float32 rotation angles: the first half of the channel pairs turn with the row, the rest with the column."""
    half = head_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, dtype=torch.int64).float() / half))
    positions = positions.float()
    return torch.cat((torch.outer(positions[:, 0], inv_freq), torch.outer(positions[:, 1], inv_freq)), dim=-1)


@lru_cache(maxsize=64)
def _rope_angles_cpu(schedule: Schedule, grid: tuple[int, int], head_dim: int, base: float) -> torch.Tensor:
    return rope_angles(scale_positions(schedule, grid), head_dim, base)


class RopeTables:
    """cos/sin tables per (schedule, reference grid, device), built on first use.

    A plain attribute of the model rather than a buffer: tables depend on the schedule of the
    batch, and keeping them out of the state dict keeps checkpoints schedule-independent.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
        self.head_dim, self.base = head_dim, base
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, schedule: Schedule, grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (L, head_dim / 2) float32, for the whole schedule."""
        key = (schedule, tuple(grid), torch.device(device))
        if key not in self._tables:
            angles = _rope_angles_cpu(schedule, tuple(grid), self.head_dim, self.base)
            self._tables[key] = (angles.cos().to(device), angles.sin().to(device))
        return self._tables[key]

    def for_scale(self, schedule: Schedule, grid: tuple[int, int], scale: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of the tables that belong to scale ``scale``."""
        cos, sin = self(schedule, grid, device)
        offsets = scale_offsets(schedule)
        return cos[offsets[scale] : offsets[scale + 1]], sin[offsets[scale] : offsets[scale + 1]]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (..., L, head_dim) by the angles of ``cos``/``sin`` (L, head_dim / 2)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
