"""The streaming reader the trainer iterates: epochs, DataLoader workers, resumable position, stats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from .config import ReaderConfig
from .dataset import READER_INFO, EpochDataset
from .formats import IMAGE_FORMAT, SampleFormat
from .plan import EpochPlan, ResampledPlan, plan_epoch, resampled_batches_per_worker
from .sources import Shard, shard_name
from .stats import sum_counts, with_skip_total

STATE_FORMAT = "infinity-train-reader"
STATE_VERSION = 1


@dataclass(frozen=True)
class WeightedShards:
    shards: tuple[Shard, ...]
    weight: float


def _keep_as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


class StreamingReader:
    """Iterating yields the rest of the current epoch (exactly ``steps_per_epoch`` batches on every
    rank for a whole epoch), then moves to the next epoch.

    Batches of the image format: ``{"images": uint8 (B, 3, H, W), "captions": list[str],
    "keys": list[str], "h_div_w": float (the batch's aspect template), "specs": list[dict | None]}``;
    other sample formats (``sample_format``) build their own batches. The pixels stay uint8 (a
    channels-last view) until the consumer: ``to_model_range(batch["images"].to(device))`` gives
    the float32 [-1, 1] the models take.
    """

    def __init__(
        self,
        config: ReaderConfig,
        shards: Sequence[Shard] | None = None,
        sources: Sequence[WeightedShards] | None = None,
        steps_per_epoch: int | None = None,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        timeout: float = 0.0,
        multiprocessing_context: Any = None,
        sample_format: SampleFormat = IMAGE_FORMAT,
    ) -> None:
        if config.resampled != (sources is not None) or (shards is None) == (sources is None):
            raise ValueError("give shards (epoch mode) or sources (resampled mode), matching config.resampled")
        self.config = config
        self.sample_format = sample_format
        self.shards = tuple(shards or ())
        self.sources = tuple(sources or ())
        self._loader_options = {
            "pin_memory": pin_memory,
            "prefetch_factor": prefetch_factor if config.num_workers else None,
            "timeout": timeout,
            "multiprocessing_context": multiprocessing_context,
        }
        if config.resampled:
            if steps_per_epoch is None or steps_per_epoch < 1:
                raise ValueError(f"resampled mode needs steps_per_epoch >= 1, got {steps_per_epoch}")
            self._resampled_batches = resampled_batches_per_worker(steps_per_epoch, config)
        self.epoch = 0
        self.batches_in_epoch = 0
        self._base_counts: dict[str, int] = {}
        self._worker_counts: dict[int, dict[str, int]] = {}
        self._plans: dict[int, EpochPlan | ResampledPlan] = {}

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on every rank (a multiple of the number of workers)."""
        return self.plan(self.epoch).batches_per_worker * self.config.workers_per_rank

    def plan(self, epoch: int) -> EpochPlan | ResampledPlan:
        if epoch not in self._plans:
            if self.config.resampled:
                plan: EpochPlan | ResampledPlan = ResampledPlan(
                    sources=tuple(tuple((s.url, s.num_samples) for s in source.shards) for source in self.sources),
                    weights=tuple(source.weight for source in self.sources),
                    batches_per_worker=self._resampled_batches,
                )
            else:
                plan = plan_epoch(self.shards, self.config, epoch)
            self._plans = {epoch: plan}  # keep only the current epoch's plan
        return self._plans[epoch]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning at the next iteration."""
        self._fold_worker_counts()
        self.epoch, self.batches_in_epoch = epoch, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._fold_worker_counts()
        steps = self.steps_per_epoch
        if self.batches_in_epoch >= steps:  # an epoch fully consumed without asking for more
            self.set_epoch(self.epoch + 1)
            steps = self.steps_per_epoch
        dataset = EpochDataset(self.config, self.plan(self.epoch), self.epoch, self.batches_in_epoch, self.sample_format)
        for batch in self._load(dataset):
            info = batch.pop(READER_INFO)
            self._worker_counts[info["worker"]] = info["counts"]
            self.batches_in_epoch += 1
            yield batch
        if self.batches_in_epoch != steps:
            raise RuntimeError(f"reader yielded {self.batches_in_epoch} batches in epoch {self.epoch}, planned {steps}")
        self.set_epoch(self.epoch + 1)

    def stats(self) -> dict[str, int]:
        """Counters for the trainer's metrics (log them e.g. as ``data/<name>``): position, samples
        and batches produced, and ``skipped/<reason>`` for every kind of bad data met so far."""
        counts = sum_counts([self._base_counts, *self._worker_counts.values()])
        return {
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            **with_skip_total(counts),
        }

    def state_dict(self) -> dict[str, Any]:
        """This rank's position: epoch and batches consumed in it (plus counters). Everything random
        derives from (seed, epoch, worker) or (seed, epoch, sample), so no RNG state is needed."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "rank": self.config.rank,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "fingerprint": self._fingerprint(),
            "settings": self._settings(),
            "counts": sum_counts([self._base_counts, *self._worker_counts.values()]),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a reader state (format {state.get('format')!r}, version {state.get('version')!r})")
        if state["fingerprint"] != self._fingerprint():
            saved, current = state.get("settings", {}), self._settings()
            changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
            raise ValueError(
                "the reader state was saved with other data or settings, so the same batches cannot be "
                f"replayed; changed: {', '.join(changed) or 'shard list'}"
            )
        if state["rank"] != self.config.rank:
            raise ValueError(f"reader state of rank {state['rank']} loaded on rank {self.config.rank}")
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self._base_counts = dict(state.get("counts", {}))
        self._worker_counts = {}

    def _load(self, dataset: EpochDataset) -> Iterator[dict[str, Any]]:
        if self.config.num_workers == 0:
            return iter(dataset)
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.config.num_workers,
            collate_fn=_keep_as_is,
            persistent_workers=False,  # each epoch's workers get that epoch's plan
            **self._loader_options,
        )
        return iter(loader)

    def _fold_worker_counts(self) -> None:
        self._base_counts = sum_counts([self._base_counts, *self._worker_counts.values()])
        self._worker_counts = {}

    def _settings(self) -> dict[str, Any]:
        settings = self.config.replay_fields()
        settings["sample_format"] = self.sample_format.name
        if self.config.resampled:
            settings["sources"] = [{"weight": s.weight, "num_shards": len(s.shards)} for s in self.sources]
            settings["batches_per_worker"] = self._resampled_batches
        else:
            settings["num_shards"] = len(self.shards)
            settings["num_samples"] = sum(s.num_samples or 0 for s in self.shards)
        return settings

    def _fingerprint(self) -> str:
        # Shard names, not URLs: moving the data (local disk -> object store) keeps the replay exact.
        shard_lists = [[(shard_name(s.url), s.num_samples) for s in group] for group in (self.shards, *(src.shards for src in self.sources))]
        text = json.dumps({"settings": self._settings(), "shards": shard_lists}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
