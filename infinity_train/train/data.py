"""The trainer's data: the embedded synthetic shards (written on first use), WebDataset shards, or
cached shards, read by the streaming reader; and a held-out set every rank can replay identically."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_pipelines.reader import StreamingReader, build_reader
from data_pipelines.synthetic import write_synthetic_dataset
from infinity_train.config.schema import DataConfig, DataSource
from infinity_train.distributed import World, barrier

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_SHARD = 256
MIN_SHARDS = 16  # the epoch-mode reader needs a shard per (rank, worker) slot


def synthetic_samples_per_shard(count: int) -> int:
    return max(1, min(MAX_SAMPLES_PER_SHARD, math.ceil(count / MIN_SHARDS)))


def prepare_synthetic(data: DataConfig, world: World) -> Path:
    """Write the synthetic train and val splits under ``data.root`` (rank 0; idempotent: complete
    shards from an earlier run with the same settings are kept) and return the directory."""
    root = Path(data.root)
    if world.is_main:
        for split, count in (("train", data.synthetic_train_samples), ("val", data.synthetic_val_samples)):
            if count == 0:
                continue
            report = write_synthetic_dataset(
                root, count, data.resolution, data.aspect_ratios, samples_per_shard=synthetic_samples_per_shard(count), seed=data.seed, split=split
            )
            log.info("synthetic data: %s", report.summary())
    barrier()
    return root


def _reader_args(data: DataConfig, micro_batch: int) -> dict[str, Any]:
    return {
        "resolution": data.resolution,
        "batch_size_per_rank": micro_batch,
        "aspect_ratios": data.aspect_ratios,
        "short_caption_prob": data.short_caption_prob,
    }


def _shards(data: DataConfig, split: str) -> tuple[Any, str | None]:
    """(shard specification, split name) of ``split`` for the configured source."""
    if data.source == DataSource.synthetic:
        return data.root, split
    pattern = data.train_shards if split == "train" else data.val_shards
    return pattern, None


def build_train_reader(data: DataConfig, world: World, micro_batch: int, seed: int) -> StreamingReader:
    shards, split = _shards(data, "train")
    common = _reader_args(data, micro_batch)
    if data.source == DataSource.cached:
        from data_pipelines.cache import build_cached_reader

        return build_cached_reader(
            shards, **common, rank=world.rank, world_size=world.world_size, num_workers=data.num_workers,
            seed=seed, shuffle_buffer=data.shuffle_buffer, resampled=data.resampled, manifest=data.manifest,
        )
    if data.mixture:
        return build_reader(
            sources=[{"shards": s.shards, "weight": s.weight, "manifest": s.manifest} for s in data.mixture],
            **common, rank=world.rank, world_size=world.world_size, num_workers=data.num_workers, seed=seed,
            shuffle_buffer=data.shuffle_buffer, resampled=True,
        )
    return build_reader(
        shards, **common, rank=world.rank, world_size=world.world_size, num_workers=data.num_workers, seed=seed,
        shuffle_buffer=data.shuffle_buffer, resampled=data.resampled, manifest=data.manifest, split=split,
    )


class HeldOutSet:
    """The validation split read in a fixed order (no shuffling, epoch 0 captions) by every rank;
    rank r evaluates batches r, r + world_size, ... so the ranks together see each sample once."""

    def __init__(self, data: DataConfig, world: World, micro_batch: int, seed: int) -> None:
        shards, split = _shards(data, "val")
        self.world = world
        common = _reader_args(data, micro_batch)
        if data.source == DataSource.cached:
            from data_pipelines.cache import build_cached_reader

            self.reader = build_cached_reader(shards, **common, rank=0, world_size=1, num_workers=0, seed=seed, shuffle_buffer=1, manifest=data.manifest, shuffle_shards=False)
        else:
            self.reader = build_reader(
                shards, **common, rank=0, world_size=1, num_workers=0, seed=seed, shuffle_buffer=1,
                manifest=data.manifest, split=split, shuffle_shards=False,
            )

    @property
    def num_batches(self) -> int:
        return self.reader.steps_per_epoch

    def batches(self, limit: int = 0) -> Iterator[dict[str, Any]]:
        """This rank's share of the held-out batches (of the first ``limit`` when limit > 0)."""
        self.reader.set_epoch(0)
        for index, batch in enumerate(self.reader):
            if limit and index >= limit:
                break
            if index % self.world.world_size == self.world.rank:
                yield batch
        self.reader.set_epoch(0)


def has_held_out(data: DataConfig) -> bool:
    if data.source == DataSource.synthetic:
        return data.synthetic_val_samples > 0
    return bool(data.val_shards)


def endless(reader: StreamingReader) -> Iterator[dict[str, Any]]:
    """Batches across epochs, resuming from the reader's current position."""
    while True:
        yield from reader
