"""Epoch plans: which samples each reader worker reads in an epoch and how many batches it yields.

Epoch mode (every sample once per epoch): the shard list is shuffled with the epoch seed and its
samples, taken in that order, are cut into ``world_size x workers`` contiguous ranges of equal
size (within one sample). A range may start or end inside a shard; that shard is then streamed by
two workers, each skipping the part that is not its own. Every worker owes the same number of
batches, the largest number any worker's range can need (see batch_count and bucketing).

Resampled mode: every worker draws shards with replacement from its source, and each sample from
a source picked by weight, forever; it owes ``ceil(steps_per_epoch / workers)`` batches per epoch.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .batch_count import share_batch_bound
from .config import ReaderConfig
from .sources import Shard
from .stats import ReaderCounters
from .tar_stream import RawSample, iter_shard_samples

MAX_EMPTY_SHARD_DRAWS = 1000  # consecutive resampled shards without a sample before giving up


@dataclass(frozen=True)
class ShardSlice:
    url: str
    start: int
    stop: int


@dataclass(frozen=True)
class EpochPlan:
    """This rank's part of one epoch in epoch mode."""

    slices: tuple[tuple[ShardSlice, ...], ...]  # per worker of this rank
    samples_per_worker: tuple[int, ...]
    batches_per_worker: int

    def expected_samples(self, worker: int) -> int | None:
        return self.samples_per_worker[worker]

    def sample_stream(self, worker: int, counters: ReaderCounters, seed_text: str, keep: frozenset[str]) -> Iterator[RawSample]:
        for piece in self.slices[worker]:
            yield from iter_shard_samples(piece.url, counters, piece.start, piece.stop, keep)


@dataclass(frozen=True)
class ResampledPlan:
    """Endless weighted mixture of sources, shards drawn with replacement."""

    sources: tuple[tuple[tuple[str, int | None], ...], ...]  # per source: (url, sample count or None)
    weights: tuple[float, ...]
    batches_per_worker: int

    def expected_samples(self, worker: int) -> int | None:
        return None

    def sample_stream(self, worker: int, counters: ReaderCounters, seed_text: str, keep: frozenset[str]) -> Iterator[RawSample]:
        streams = [
            _resampled_shards(shards, random.Random(f"{seed_text}/source{i}"), counters, keep) for i, shards in enumerate(self.sources)
        ]
        pick = random.Random(f"{seed_text}/mixture")
        indices = range(len(streams))
        while True:
            (i,) = pick.choices(indices, weights=self.weights)
            counters.add(f"samples_from_source/{i}")
            yield next(streams[i])


def check_epoch_mode(shards: Sequence[Shard], config: ReaderConfig, spec_text: str) -> None:
    """Refuse, with the fix in the message, what epoch mode cannot read evenly."""
    unknown = [s.url for s in shards if s.num_samples is None]
    if unknown:
        raise ValueError(
            f"sample counts of {len(unknown)} shard(s) are unknown (e.g. {unknown[0]}): epoch mode needs them to "
            "give every rank the same number of steps; pass manifest=<manifest.json>, or use resampled=True "
            "with steps_per_epoch"
        )
    if len(shards) < config.num_slots:
        raise ValueError(
            f"epoch mode splits shards across world_size x num_workers = {config.world_size} x "
            f"{config.workers_per_rank} = {config.num_slots} readers, but {spec_text} has only {len(shards)} "
            "shard(s); use fewer DataLoader workers, more (smaller) shards, or resampled=True"
        )
    total = sum(s.num_samples or 0 for s in shards)
    if total < config.num_slots:
        raise ValueError(f"{spec_text} holds {total} samples, fewer than the {config.num_slots} readers")


def plan_epoch(shards: Sequence[Shard], config: ReaderConfig, epoch: int) -> EpochPlan:
    order = list(range(len(shards)))
    if config.shuffle_shards:
        random.Random(f"{config.seed}/shard-order/{epoch}").shuffle(order)
    ordered = [shards[i] for i in order]
    total = sum(s.num_samples or 0 for s in ordered)
    bounds = [slot * total // config.num_slots for slot in range(config.num_slots + 1)]
    slot_slices: list[list[ShardSlice]] = [[] for _ in range(config.num_slots)]
    slot_pieces: list[list[tuple[Shard, int]]] = [[] for _ in range(config.num_slots)]
    offset = 0
    for shard in ordered:
        count = shard.num_samples or 0
        slot = max(0, bisect.bisect_right(bounds, offset) - 1)
        while slot < config.num_slots and bounds[slot] < offset + count:
            start, stop = max(bounds[slot], offset), min(bounds[slot + 1], offset + count)
            if start < stop:
                slot_slices[slot].append(ShardSlice(shard.url, start - offset, stop - offset))
                slot_pieces[slot].append((shard, stop - start))
            slot += 1
        offset += count
    sizes = [bounds[slot + 1] - bounds[slot] for slot in range(config.num_slots)]
    batches = max(share_batch_bound(pieces, config.batch_size, config.templates) for pieces in slot_pieces)
    mine = [config.slot(w) for w in range(config.workers_per_rank)]
    return EpochPlan(
        slices=tuple(tuple(slot_slices[s]) for s in mine),
        samples_per_worker=tuple(sizes[s] for s in mine),
        batches_per_worker=batches,
    )


def resampled_batches_per_worker(steps_per_epoch: int, config: ReaderConfig) -> int:
    return math.ceil(steps_per_epoch / config.workers_per_rank)


def default_resampled_steps(total_samples: int, config: ReaderConfig) -> int:
    """Steps per rank that show each sample about once per epoch."""
    return max(1, total_samples // (config.world_size * config.batch_size))


def _resampled_shards(
    shards: Sequence[tuple[str, int | None]], rng: random.Random, counters: ReaderCounters, keep: frozenset[str]
) -> Iterator[RawSample]:
    empty_draws = 0
    while True:
        url, num_samples = shards[rng.randrange(len(shards))]
        got_any = False
        for sample in iter_shard_samples(url, counters, stop=num_samples, keep=keep):
            got_any = True
            yield sample
        empty_draws = 0 if got_any else empty_draws + 1
        if empty_draws >= MAX_EMPTY_SHARD_DRAWS:
            raise RuntimeError(
                f"{counters.context}{MAX_EMPTY_SHARD_DRAWS} shards in a row gave no sample (e.g. {url}); "
                "see the skipped/shard_error and skipped/tar_error counts"
            )
