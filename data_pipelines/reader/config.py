"""The reader's settings, validated once; everything that decides which sample lands in which batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from infinity_train.geometry import ASPECT_RATIOS, num_scales, pixel_size, resolve_template


@dataclass(frozen=True)
class ReaderConfig:
    resolution: int
    templates: tuple[float, ...]
    batch_size: int  # per rank
    rank: int
    world_size: int
    num_workers: int  # DataLoader workers; 0 reads in the calling process
    seed: int
    shuffle_buffer: int
    short_caption_prob: float
    resampled: bool
    shuffle_shards: bool = True
    log_first: int = 5
    log_every: int = 1000

    def __post_init__(self) -> None:
        num_scales(self.resolution)  # clear error for an unsupported resolution
        if not self.templates:
            raise ValueError("aspect_ratios must name at least one template")
        for template in self.templates:
            pixel_size(self.resolution, template)
        if self.batch_size < 1:
            raise ValueError(f"batch_size_per_rank must be >= 1, got {self.batch_size}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {self.rank}, world_size {self.world_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1 (1 keeps the shard order), got {self.shuffle_buffer}")
        if not 0.0 <= self.short_caption_prob <= 1.0:
            raise ValueError(f"short_caption_prob must be in [0, 1], got {self.short_caption_prob}")

    @property
    def workers_per_rank(self) -> int:
        """Reader slots per rank: the calling process counts as one when num_workers is 0."""
        return max(1, self.num_workers)

    @property
    def num_slots(self) -> int:
        return self.world_size * self.workers_per_rank

    def slot(self, worker: int) -> int:
        return self.rank * self.workers_per_rank + worker

    def replay_fields(self) -> dict[str, Any]:
        """Settings a resumed reader must share with the saved one to replay the same batches."""
        fields = asdict(self)
        for name in ("rank", "log_first", "log_every"):
            fields.pop(name)
        fields["templates"] = list(self.templates)
        return fields


def resolve_templates(aspect_ratios: Sequence[float] | None) -> tuple[float, ...]:
    """The allowed aspect templates, ascending (all 15 when None)."""
    if aspect_ratios is None:
        return ASPECT_RATIOS
    return tuple(sorted({resolve_template(a) for a in aspect_ratios}))


def distributed_rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; else the trainer's own rule (``infinity_train.distributed.current_rank_and_size``)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    from infinity_train.distributed import current_rank_and_size

    detected = current_rank_and_size()
    return (detected[0] if rank is None else rank), (detected[1] if world_size is None else world_size)
