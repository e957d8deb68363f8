"""Streaming reader of WebDataset image-text shards for training: node/worker splitting, seeded
shuffling, weighted resampled mixtures, aspect-ratio bucketing, bad-data accounting and exact resume.

    reader = build_reader("/data/train-{000000..000127}.tar", resolution=256, batch_size_per_rank=32,
                          rank=rank, world_size=world_size, num_workers=4, seed=0)
    for epoch in range(epochs):
        for batch in reader:            # exactly reader.steps_per_epoch batches on every rank
            images = to_model_range(batch["images"].to(device))  # uint8 -> float32 in [-1, 1]
            ...
            metrics.update({f"data/{k}": v for k, v in reader.stats().items()})
        checkpoint["reader"] = reader.state_dict()

Captions are read from ``{key}.json`` (``long_caption`` / ``caption``, short ``text``) or an
img2dataset ``{key}.txt``. Cached latents and text embeddings: data_pipelines.cache.build_cached_reader.
"""

from .factory import build_reader
from .formats import IMAGE_FORMAT, SampleFormat
from .images import to_model_range
from .reader import StreamingReader
from .sources import Source
from .stats import SKIP_REASONS

__all__ = ["IMAGE_FORMAT", "SKIP_REASONS", "SampleFormat", "Source", "StreamingReader", "build_reader", "to_model_range"]
