"""Caches of frozen-model outputs: an offline job that stores, per sample of raw shards, the
tokenizer's latent F, its per-scale bits and the caption embeddings, and a streaming reader of
those cached shards with the same splitting, shuffling, bucketing and resume as build_reader.

    models = CacheModels.identified(load_tokenizer_checkpoint(ckpt), TextEncoder.from_config("minilm"), ckpt)
    write_cache("raw/", "cached/", models, resolution=256)
    reader = build_cached_reader("cached/", resolution=256, batch_size_per_rank=32, num_workers=4)
"""

from .job import CacheModels, CacheReport, write_cache
from .reader import CachedFormat, build_cached_reader
from .sample_checks import CachedSample, CacheSignature

__all__ = ["CacheModels", "CacheReport", "CacheSignature", "CachedFormat", "CachedSample", "build_cached_reader", "write_cache"]
