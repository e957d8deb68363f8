"""Example image-text shards in the training format, for smoke tests and the throughput benchmark.

Images are photo-like (smooth color gradients, soft blobs and sensor-like noise, so JPEG sizes and
decode costs resemble photographs); captions have several sentences and a short form.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from data_pipelines.shards import ShardWriter, split_entry, write_split_entry

COLORS = ("red", "green", "blue", "amber", "teal", "violet")


def photo_like_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    # Smooth content is drawn at a quarter of the size and upsampled (fast); grain is full size.
    small_w, small_h = max(2, width // 4), max(2, height // 4)
    y, x = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    x, y = x / (small_w - 1), y / (small_h - 1)
    corners = rng.uniform(0, 255, size=(4, 3)).astype(np.float32)
    smooth = (
        corners[0] * ((1 - x) * (1 - y))[..., None]
        + corners[1] * (x * (1 - y))[..., None]
        + corners[2] * ((1 - x) * y)[..., None]
        + corners[3] * (x * y)[..., None]
    )
    for _ in range(3):
        cx, cy, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
        smooth += blob[..., None] * rng.uniform(-90, 90, size=3).astype(np.float32)
    base = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    grain = rng.standard_normal((height, width, 1), dtype=np.float32) * 6.0
    return Image.fromarray(np.clip(np.asarray(base, np.float32) + grain, 0, 255).astype(np.uint8))


def example_captions(index: int, rng: np.random.Generator) -> tuple[str, str]:
    color = COLORS[int(rng.integers(len(COLORS)))]
    sentences = [
        f"Example image {index} shows a soft {color} gradient.",
        f"There are {int(rng.integers(1, 5))} blurred blobs on it.",
        "Fine grain covers the whole frame.",
        f"The light falls from the {('left', 'right', 'top')[index % 3]}.",
    ]
    return " ".join(sentences[: 2 + index % 3]), f"a {color} gradient"


def encode(image: Image.Image, image_format: str, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format=image_format.upper())
    return buffer.getvalue()


def write_example_shards(
    directory: str | os.PathLike,
    num_samples: int,
    samples_per_shard: int,
    sizes: Sequence[tuple[int, int]] = ((48, 36),),
    image_format: str = "jpg",
    prefix: str = "train",
    seed: int = 0,
) -> list[str]:
    """Write ``{prefix}-NNNNNN.tar`` shards plus their manifest entry; returns the shard paths.

    Sample ``i`` has size ``sizes[i % len(sizes)]`` (width, height) and key ``{prefix}-{i:06d}``.
    """
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    with ShardWriter(directory, prefix, samples_per_shard) as writer:
        for index in range(num_samples):
            width, height = sizes[index % len(sizes)]
            long_caption, short_caption = example_captions(index, rng)
            metadata = {
                "long_caption": long_caption,
                "text": short_caption,
                "h_div_w": round(height / width, 3),
                "width": width,
                "height": height,
                "spec": {"index": index},
            }
            files = {image_format: encode(photo_like_image(rng, width, height), image_format), "json": json.dumps(metadata).encode()}
            writer.write(f"{prefix}-{index:06d}", files, h_div_w=height / width)
    write_split_entry(directory, prefix, split_entry(prefix, writer.shards, complete=True))
    return [str(directory / shard.name) for shard in writer.shards]
