"""Aspect-ratio bucketing into batches of one template, with exactly a planned number of batches.

Equal steps: every reader worker of every rank must yield the same number of batches, or DDP
ranks would wait on each other forever at the epoch's end. Each worker is told, up front, how
many batches it owes (``num_batches``) and, in epoch mode, how many samples its share holds
(``expected_samples``). Full batches go out as buckets fill, but only while enough samples remain
to make every batch still owed; the rest are formed at the end: the leftover of each bucket is
split into near-equal batches (so some end-of-epoch batches are smaller than ``batch_size``), and
every sample is used exactly once. Only when a worker's share holds fewer good samples than the
batches it owes (bad data; or batch size 1 with shares of unequal size) is a batch repeated
(``padded_batches``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .samples import Sample
from .stats import ReaderCounters


@dataclass(frozen=True)
class BatchPlan:
    template: float
    samples: tuple[Sample, ...]
    repeated: bool = False  # a copy of an earlier batch, made because bad data left too few samples


class AspectBucketer:
    def __init__(
        self,
        batch_size: int,
        num_batches: int,
        expected_samples: int | None,
        templates: Sequence[float],
        counters: ReaderCounters,
    ) -> None:
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.expected_samples = expected_samples  # None: an endless (resampled) stream
        self.templates = tuple(templates)
        self.counters = counters
        self.buckets: dict[float, list[Sample]] = {}
        self.seen = self.held = self.emitted = 0
        self.last_full: BatchPlan | None = None

    @property
    def done(self) -> bool:
        return self.emitted >= self.num_batches

    def add(self, sample: Sample | None) -> list[BatchPlan]:
        """Take the next sample of the stream (None: a rejected one); returns the batches now ready."""
        self.seen += 1
        if sample is None:
            return []
        bucket = self.buckets.setdefault(sample.template, [])
        bucket.append(sample)
        self.held += 1
        ready = []
        while len(bucket) >= self.batch_size and self._may_emit_full():
            plan = BatchPlan(sample.template, tuple(bucket[: self.batch_size]))
            del bucket[: self.batch_size]
            self.held -= self.batch_size
            self.emitted += 1
            self.last_full = plan
            ready.append(plan)
        return ready

    def finish(self) -> list[BatchPlan]:
        """The batches still owed once the stream has ended, built from the bucket leftovers."""
        owed = self.num_batches - self.emitted
        groups = {t: self.buckets[t] for t in self.templates if self.buckets.get(t)}
        self.buckets, self.held = {}, 0
        if self.expected_samples is None:
            return []  # an endless stream only ends once every batch is out
        self._fit(groups, owed)
        counts = self._split_counts(groups, owed)
        plans = [
            BatchPlan(template, chunk)
            for (template, samples), count in zip(groups.items(), counts)
            for chunk in _near_equal_chunks(samples, count)
        ]
        self.counters.add("tail_batches", len(plans))
        missing = owed - len(plans)
        if missing:
            pool = plans or ([self.last_full] if self.last_full else [])
            if not pool:
                raise RuntimeError(
                    f"{self.counters.context}no readable sample in this reader's share of the epoch "
                    f"({self.expected_samples} samples expected); see the skipped/* counts"
                )
            plans += [replace(pool[i % len(pool)], repeated=True) for i in range(missing)]
            self.counters.add("padded_batches", missing)
        self.emitted += len(plans)
        return plans

    def _may_emit_full(self) -> bool:
        if self.done:
            return False
        if self.expected_samples is None or self.batch_size == 1:
            return True  # a one-sample batch can never be split, so holding it back gains nothing
        unseen = max(0, self.expected_samples - self.seen)
        owed_after = self.num_batches - self.emitted - 1
        return self.held - self.batch_size + unseen >= owed_after

    def _batches_needed(self, groups: dict[float, list[Sample]]) -> int:
        return sum(math.ceil(len(samples) / self.batch_size) for samples in groups.values())

    def _fit(self, groups: dict[float, list[Sample]], owed: int) -> None:
        """Make the leftovers fit in ``owed`` batches. They always do when the manifest's aspect
        counts match the images; otherwise the smallest leftover joins the nearest template's
        batch (cropped to that template's size) rather than being lost."""
        while len(groups) > 1 and self._batches_needed(groups) > owed:
            smallest = min(groups, key=lambda t: (len(groups[t]), t))
            target = min((t for t in groups if t != smallest), key=lambda t: (abs(t - smallest), t))
            self.counters.add("recropped_samples", len(groups[smallest]))
            groups[target].extend(groups.pop(smallest))
        for template in list(groups):  # only reachable if more samples arrived than were planned
            kept = owed * self.batch_size
            if len(groups[template]) > kept:
                self.counters.add("dropped_samples", len(groups[template]) - kept)
                del groups[template][kept:]
            if not groups[template]:
                del groups[template]

    def _split_counts(self, groups: dict[float, list[Sample]], owed: int) -> list[int]:
        """Batches per leftover group: ceil(size / batch_size) each, plus splits of the largest
        batches until ``owed`` are made (or every batch holds one sample)."""
        sizes = [len(samples) for samples in groups.values()]
        counts = [math.ceil(size / self.batch_size) for size in sizes]
        for _ in range(owed - sum(counts)):
            splittable = [j for j in range(len(sizes)) if sizes[j] > counts[j]]
            if not splittable:
                break
            i = max(splittable, key=lambda j: (sizes[j] / counts[j], -j))
            counts[i] += 1
        return counts


def _near_equal_chunks(samples: Sequence[Sample], count: int) -> list[tuple[Sample, ...]]:
    size, extra = divmod(len(samples), count)
    chunks, start = [], 0
    for i in range(count):
        stop = start + size + (1 if i < extra else 0)
        chunks.append(tuple(samples[start:stop]))
        start = stop
    return chunks
