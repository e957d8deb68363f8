"""``build_cached_reader``: the streaming reader over cached shards (see ``infinity-data cache``).

The same machinery as ``build_reader`` (node/worker split, epoch-seeded shuffle, resampled
weighted mixtures, bucketing by aspect template, exact resume, bad-data counts); only the sample
format differs. A cache holds one resolution and its templates' schedules, so the manifests
beside the shards are checked up front: a cache of another resolution, a template the reader
does not allow, raw image shards, or caches of different models in one reader are refused with
the fix in the message. Shards without a manifest (remote ones) are checked per sample.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipelines.reader.config import ReaderConfig, resolve_templates
from data_pipelines.reader.factory import SourceLike, as_source, build_reader
from data_pipelines.reader.reader import StreamingReader
from data_pipelines.reader.sources import MANIFEST_NAME, ShardSpec, expand_shard_urls, local_path, shard_name
from data_pipelines.reader.stats import ReaderCounters
from data_pipelines.reader.tar_stream import RawSample

from .batches import CachedBatchMaker
from .members import CACHED_EXTENSIONS
from .sample_checks import CachedSample, CacheSignature, prepare_cached_sample


@dataclass(frozen=True)
class CachedFormat:
    resolution: int
    signature: CacheSignature | None = None
    name: str = "cached"

    @property
    def kept_extensions(self) -> frozenset[str]:
        return CACHED_EXTENSIONS

    def prepare(self, raw: RawSample, templates: Sequence[float], counters: ReaderCounters) -> CachedSample | None:
        return prepare_cached_sample(raw, templates, counters, self.resolution, self.signature)

    def batch_builder(self, config: ReaderConfig, epoch: int, counters: ReaderCounters) -> CachedBatchMaker:
        return CachedBatchMaker(config, epoch, counters)


def build_cached_reader(
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
) -> StreamingReader:
    """A streaming reader of cached shards for one rank; arguments as ``build_reader``.

    Batches: ``{"latents": float32 (B, d, H, W) (the tokenizer's F), "text": list of B float32
    (len_i, Dt) caption embeddings, "bits": list per scale of bool (B, h_k, w_k, token_dim),
    "captions": list[str] (the embedded captions used), "keys", "h_div_w": float, "specs"}``.
    The shuffle buffer holds cached samples (text embeddings are the bulk: len x Dt x 2 bytes,
    up to twice per sample), so size ``shuffle_buffer`` with that in mind.
    """
    templates = resolve_templates(aspect_ratios)
    specs = [(shards, manifest, split)] if sources is None else [_spec_of(as_source(s)) for s in sources]
    signature = check_cache_params([entry for spec in specs for entry in cache_entries(*spec)], resolution, templates)
    return build_reader(
        shards,
        resolution=resolution,
        batch_size_per_rank=batch_size_per_rank,
        aspect_ratios=aspect_ratios,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        short_caption_prob=short_caption_prob,
        resampled=resampled,
        sources=sources,
        steps_per_epoch=steps_per_epoch,
        manifest=manifest,
        split=split,
        shuffle_shards=shuffle_shards,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor,
        timeout=timeout,
        log_first=log_first,
        log_every=log_every,
        sample_format=CachedFormat(resolution, signature),
    )


def cache_entries(spec: ShardSpec | None, manifest: str | os.PathLike | None, split: str | None) -> list[dict[str, Any]]:
    """The manifest split entries that list shards of ``spec`` (given manifest, or beside local shards)."""
    if spec is None:
        return []
    urls = expand_shard_urls(spec, split)
    names = {shard_name(url) for url in urls}
    paths = {Path(manifest)} if manifest is not None else set()
    paths |= {p.parent / MANIFEST_NAME for p in (local_path(url) for url in urls) if p is not None}
    entries = []
    for path in sorted(paths):
        if not path.is_file():
            continue
        try:
            splits = json.loads(path.read_text()).get("splits", {})
        except (OSError, ValueError, AttributeError) as error:
            raise ValueError(f"unreadable shard manifest {path}: {error}") from None
        for name, entry in splits.items():
            if names & {s.get("name") for s in entry.get("shards", [])}:
                entries.append({**entry, "_where": f"{path} split {name!r}"})
    return entries


def check_cache_params(entries: Sequence[Mapping[str, Any]], resolution: int, templates: Sequence[float]) -> CacheSignature | None:
    """Refuse what a cached reader cannot read; the models' signature when the manifests record it."""
    signatures = set()
    for entry in entries:
        where = entry.get("_where", "a manifest")
        if entry.get("source") != "cache":
            raise ValueError(
                f"{where} lists raw shards (source {entry.get('source')!r}), not a cache: run `infinity-data cache` "
                "on them first, or read them with build_reader (data.source=webdataset)"
            )
        params = entry.get("params", {})
        if params.get("resolution") != resolution:
            raise ValueError(f"{where} was cached at resolution {params.get('resolution')}, not {resolution}: re-run the cache job")
        outside = [float(t) for t in entry.get("aspect_ratios", {}) if float(t) not in templates]  # templates it holds
        if outside:
            raise ValueError(
                f"{where} holds aspect templates {outside} that aspect_ratios={list(templates)} excludes; cached latents "
                "cannot be re-cropped: allow them, or cache with --aspect-ratios"
            )
        signatures.add(signature_of(params))
    if len(signatures) > 1:
        raise ValueError(f"the shards mix caches of different models {sorted(signatures, key=str)}: use one cache per reader")
    return signatures.pop() if signatures else None


def signature_of(params: Mapping[str, Any]) -> CacheSignature:
    tokenizer, text = params["tokenizer"], params["text_encoder"]
    return CacheSignature(int(tokenizer["d"]), int(tokenizer["token_dim"]), int(text["hidden_dim"]))


def _spec_of(source: Any) -> tuple[ShardSpec, str | os.PathLike | None, str | None]:
    return source.shards, source.manifest, source.split
