"""``build_reader``: the one entry point the trainer calls."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .config import ReaderConfig, distributed_rank_and_size, resolve_templates
from .formats import IMAGE_FORMAT, SampleFormat
from .plan import check_epoch_mode, default_resampled_steps
from .reader import StreamingReader, WeightedShards
from .sources import ShardSpec, Source, resolve_shards

SourceLike = Source | tuple[ShardSpec, float] | Mapping[str, Any]


def build_reader(
    shards: ShardSpec | None = None,
    *,
    resolution: int,
    batch_size_per_rank: int,
    aspect_ratios: Sequence[float] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    num_workers: int = 2,
    seed: int = 0,
    shuffle_buffer: int = 1000,
    short_caption_prob: float = 0.5,
    resampled: bool = False,
    sources: Sequence[SourceLike] | None = None,
    steps_per_epoch: int | None = None,
    manifest: str | os.PathLike | None = None,
    split: str | None = None,
    shuffle_shards: bool = True,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    timeout: float = 0.0,
    log_first: int = 5,
    log_every: int = 1000,
    sample_format: SampleFormat = IMAGE_FORMAT,
) -> StreamingReader:
    """A streaming reader of image-text shards for one rank.

    Epoch mode (``resampled=False``): every sample exactly once per epoch across all ranks and
    workers; needs per-shard sample counts (``manifest.json``) and at least world_size x
    max(1, num_workers) shards. Resampled mode: shards drawn with replacement, each sample from a
    source picked by weight (``sources``: ``Source``, ``(shards, weight)`` or
    ``{"shards": ..., "weight": ...}``; ``shards`` alone is one source), ``steps_per_epoch``
    batches per rank per epoch (default: about one pass over the samples the manifests count).
    ``rank`` / ``world_size`` default to torch.distributed, else the RANK / WORLD_SIZE variables.
    ``sample_format`` parses samples and builds batches (images by default; see
    data_pipelines.cache.build_cached_reader for cached latents and text embeddings).
    """
    rank, world_size = distributed_rank_and_size(rank, world_size)
    config = ReaderConfig(
        resolution=resolution,
        templates=resolve_templates(aspect_ratios),
        batch_size=batch_size_per_rank,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        short_caption_prob=short_caption_prob,
        resampled=resampled,
        shuffle_shards=shuffle_shards,
        log_first=log_first,
        log_every=log_every,
    )
    loader_options = {"pin_memory": pin_memory, "prefetch_factor": prefetch_factor, "timeout": timeout, "sample_format": sample_format}
    if not resampled:
        if sources is not None or shards is None:
            raise ValueError("epoch mode reads `shards`; weighted `sources` need resampled=True")
        if steps_per_epoch is not None:
            raise ValueError("epoch mode derives steps_per_epoch from the manifest counts; it is set only with resampled=True")
        resolved = resolve_shards(shards, manifest, split)
        check_epoch_mode(resolved, config, _describe(shards))
        return StreamingReader(config, shards=resolved, **loader_options)

    if (shards is None) == (sources is None):
        raise ValueError("resampled mode reads either `shards` (one source) or `sources`, not both")
    plain = [Source(shards, 1.0, manifest, split)] if sources is None else [as_source(s) for s in sources]
    if not plain:
        raise ValueError("resampled mode needs at least one source")
    weighted = [_weighted(source) for source in plain]
    if steps_per_epoch is None:
        counts = [s.num_samples for w in weighted for s in w.shards]
        if any(c is None for c in counts):
            raise ValueError("sample counts of some shards are unknown: pass steps_per_epoch (or a manifest)")
        steps_per_epoch = default_resampled_steps(sum(c or 0 for c in counts), config)
    return StreamingReader(config, sources=weighted, steps_per_epoch=steps_per_epoch, **loader_options)


def as_source(source: SourceLike) -> Source:
    if isinstance(source, Source):
        return source
    if isinstance(source, Mapping):
        return Source(**source)
    spec, weight = source
    return Source(spec, float(weight))


def _weighted(source: Source) -> WeightedShards:
    if not source.weight > 0:
        raise ValueError(f"source weights must be > 0, got {source.weight} for {source.shards!r}")
    return WeightedShards(tuple(resolve_shards(source.shards, source.manifest, source.split)), float(source.weight))


def _describe(shards: ShardSpec) -> str:
    text = str(shards) if isinstance(shards, (str, os.PathLike)) else f"a list of {len(shards)} shard specifications"
    return text if len(text) <= 200 else text[:197] + "..."
