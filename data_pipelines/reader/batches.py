"""Turning a batch plan into the training batch: decode, resize, choose captions."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from infinity_train.geometry import pixel_size

from .bucketing import BatchPlan
from .captions import choose_caption
from .config import ReaderConfig
from .images import decode_to_size, stack_images
from .samples import Sample
from .sources import shard_name
from .stats import ReaderCounters

RECENT_PLANS = 4  # batches kept for the whole-batch decode failure fallback


def caption_rng(config: ReaderConfig, epoch: int, sample: Sample) -> random.Random:
    """Per-sample randomness keyed by the sample, not its position: resuming needs no RNG state.
    Keyed by shard name, not URL, so moving the data keeps the captions."""
    return random.Random(f"{config.seed}/caption/{epoch}/{shard_name(sample.url)}/{sample.key}")


class BatchMaker:
    """Decodes batch plans of one worker. A sample whose pixels fail to decode (its header and
    length were fine) is replaced by a batch mate, or, when the whole batch failed, by an image of
    the worker's previous batches, cropped to this batch's size; a batch keeps its planned size.
    The fallback depends only on the plans, so a resumed run replays it exactly.
    """

    def __init__(self, config: ReaderConfig, epoch: int, counters: ReaderCounters) -> None:
        self.config = config
        self.epoch = epoch
        self.counters = counters
        self.recent_plans: deque[BatchPlan] = deque(maxlen=RECENT_PLANS)

    def make(self, plan: BatchPlan) -> dict[str, Any]:
        """``{"images": uint8 (B, 3, H, W), "captions", "keys", "h_div_w", "specs"}``. In a DataLoader
        worker the pixels are written into shared memory, which the main process maps as it is."""
        size = pixel_size(self.config.resolution, plan.template)
        decoded: list[tuple[Sample, np.ndarray]] = []
        for sample in plan.samples:
            try:
                decoded.append((sample, decode_to_size(sample.image, size)))
            except Exception as error:  # noqa: BLE001 - Pillow raises many types for damaged data
                if not plan.repeated:  # a repeated batch's failures were counted the first time
                    self.counters.skip("image_decode_error", f"{sample.url} sample {sample.key!r}", error)
        replaced = len(plan.samples) - len(decoded)
        if replaced:
            if not plan.repeated:
                self.counters.add("replaced_samples", replaced)
            if not decoded:
                decoded.append(self._earlier_image(size))
            decoded += [decoded[i % len(decoded)] for i in range(len(plan.samples) - len(decoded))]
        self.recent_plans.append(plan)
        samples = [s for s, _ in decoded]
        self.counters.add("batches")
        self.counters.add("samples_in_batches", len(samples))
        return {
            "images": stack_images([image for _, image in decoded], shared=get_worker_info() is not None),
            "captions": [self._caption(s) for s in samples],
            "keys": [s.key for s in samples],
            "h_div_w": plan.template,
            "specs": [s.spec for s in samples],
        }

    def remember(self, plan: BatchPlan) -> None:
        """A plan passed over while resuming: an earlier image the fallback may use."""
        self.recent_plans.append(plan)

    def _earlier_image(self, size: tuple[int, int]) -> tuple[Sample, np.ndarray]:
        for plan in reversed(self.recent_plans):
            for sample in reversed(plan.samples):
                try:
                    return sample, decode_to_size(sample.image, size)
                except Exception:  # noqa: BLE001 - already counted when its own batch was made
                    continue
        raise RuntimeError(
            f"{self.counters.context}no image of this batch or of the {len(self.recent_plans)} before it "
            "decodes; see skipped/image_decode_error"
        )

    def _caption(self, sample: Sample) -> str:
        rng = caption_rng(self.config, self.epoch, sample)
        return choose_caption(sample.long_caption, sample.short_caption, self.config.short_caption_prob, rng)
