"""A batch of cached samples: latents, per-scale bits and the chosen caption's text embedding.

Caption choice: the short caption with probability ``short_caption_prob``, else the full long
caption, drawn from the raw reader's per-sample RNG (seed, epoch, shard name, key), so a cached
and a raw reader pick the short caption for the same samples in the same epochs. The raw reader
also cuts long captions to a random whole-sentence prefix; the cache embedded the whole long
caption (a prefix of an encoder's output is not the encoding of the prefix), so it cannot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from data_pipelines.reader.batches import caption_rng
from data_pipelines.reader.bucketing import BatchPlan
from data_pipelines.reader.config import ReaderConfig
from data_pipelines.reader.stats import ReaderCounters

from .members import unpack_bits
from .sample_checks import CachedSample


class CachedBatchMaker:
    def __init__(self, config: ReaderConfig, epoch: int, counters: ReaderCounters) -> None:
        self.config = config
        self.epoch = epoch
        self.counters = counters

    def make(self, plan: BatchPlan) -> dict[str, Any]:
        """``{"latents": float32 (B, d, H, W), "text": [float32 (len_i, Dt)], "bits": [bool (B, h_k, w_k, c)]
        per scale, "captions", "keys", "h_div_w", "specs"}``."""
        samples: list[CachedSample] = list(plan.samples)  # type: ignore[arg-type]
        shorts = [self._use_short(s) for s in samples]
        try:
            latents = np.stack([s.latent for s in samples])
            per_sample_bits = [unpack_bits(s.packed_bits, s.bits_shapes) for s in samples]
            bits = [torch.from_numpy(np.stack(scale)) for scale in zip(*per_sample_bits)]
        except ValueError as error:
            raise RuntimeError(
                f"{self.counters.context}cached samples of one batch have different shapes ({error}); "
                "the shards mix caches of different tokenizers: read them with separate readers"
            ) from None
        texts = [s.text_short if short and s.text_short is not None else s.text_long for s, short in zip(samples, shorts)]
        self.counters.add("batches")
        self.counters.add("samples_in_batches", len(samples))
        return {
            "latents": torch.from_numpy(latents).float(),
            "text": [torch.from_numpy(text).float() for text in texts],
            "bits": bits,
            "captions": [s.short_caption if short else s.long_caption for s, short in zip(samples, shorts)],
            "keys": [s.key for s in samples],
            "h_div_w": plan.template,
            "specs": [s.spec for s in samples],
        }

    def remember(self, plan: BatchPlan) -> None:
        """Nothing to keep: a cached sample that passed its checks always batches."""

    def _use_short(self, sample: CachedSample) -> bool:
        if not sample.short_caption:
            return False
        return caption_rng(self.config, self.epoch, sample).random() < self.config.short_caption_prob  # type: ignore[arg-type]
