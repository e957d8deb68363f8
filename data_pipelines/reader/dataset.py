"""One epoch of one rank as a torch IterableDataset; each DataLoader worker reads its own share.

Per worker: raw samples of its share -> shuffle buffer (raw bytes, epoch-seeded) -> the sample
format's cheap checks -> aspect buckets -> the format's batch (decoded and resized images, or cached
tensors). A resumed epoch replays the same steps without building batches up to the first one not
yet consumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info
from webdataset.filters import shuffle

from .bucketing import AspectBucketer, BatchPlan
from .config import ReaderConfig
from .formats import IMAGE_FORMAT, SampleFormat
from .plan import EpochPlan, ResampledPlan
from .stats import ReaderCounters
from .tar_stream import RawSample

READER_INFO = "_reader"  # batch entry that carries worker counters to the main process


def batches_before(consumed: int, worker: int, workers: int) -> int:
    """Batches of ``worker`` among the first ``consumed`` of a rank. Every worker yields the same
    number of batches, so the DataLoader's in-order round robin makes batch j worker j % workers's."""
    return max(0, (consumed - worker + workers - 1) // workers)


class EpochDataset(IterableDataset):
    def __init__(
        self,
        config: ReaderConfig,
        plan: EpochPlan | ResampledPlan,
        epoch: int,
        consumed_batches: int = 0,
        sample_format: SampleFormat = IMAGE_FORMAT,
    ) -> None:
        super().__init__()
        self.config = config
        self.plan = plan
        self.epoch = epoch
        self.consumed_batches = consumed_batches
        self.sample_format = sample_format

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        loader_worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.config.workers_per_rank:
            raise RuntimeError(f"reader planned for {self.config.workers_per_rank} workers but runs in {workers}")
        # The DataLoader always asks its worker 0 first; after c consumed batches the next batch
        # belongs to share c % workers, so loader workers take the shares rotated by c.
        worker = (loader_worker + self.consumed_batches) % workers
        skip = batches_before(self.consumed_batches, worker, workers)
        counters = ReaderCounters(self.config.log_first, self.config.log_every, f"rank {self.config.rank} worker {worker}: ")
        counters.logging_enabled = skip == 0  # replayed data was logged by the interrupted run
        maker = self.sample_format.batch_builder(self.config, self.epoch, counters)
        for index, plan in enumerate(self._batch_plans(worker, counters)):
            if index < skip:
                maker.remember(plan)
                if index == skip - 1:
                    counters.reset()  # the interrupted run already counted everything up to here
                    counters.logging_enabled = True
                continue
            batch = maker.make(plan)
            batch[READER_INFO] = {"worker": worker, "counts": counters.snapshot()}
            yield batch

    def _batch_plans(self, worker: int, counters: ReaderCounters) -> Iterator[BatchPlan]:
        slot = self.config.slot(worker)
        seed_text = f"{self.config.seed}/{self.epoch}/{slot}"
        raw: Iterator[RawSample] = self.plan.sample_stream(worker, counters, seed_text, self.sample_format.kept_extensions)
        buffer = self.config.shuffle_buffer
        if buffer > 1:
            raw = shuffle(buffer, initial=buffer, rng=random.Random(f"{seed_text}/sample-shuffle"))(raw)
        bucketer = AspectBucketer(
            self.config.batch_size,
            self.plan.batches_per_worker,
            self.plan.expected_samples(worker),
            self.config.templates,
            counters,
        )
        for sample in raw:
            counters.add("samples_read")
            yield from bucketer.add(self.sample_format.prepare(sample, self.config.templates, counters))
            if bucketer.done:
                break
        yield from bucketer.finish()
