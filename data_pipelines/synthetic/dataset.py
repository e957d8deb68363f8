"""The synthetic dataset as WebDataset shards: one sample per index, reproducible and resumable.

Sample ``i`` of a split is a pure function of (seed, split, i) and the generation parameters,
so the same arguments always give byte-identical shards, a re-run finds finished shards in the
manifest and skips them, and an interrupted job resumes after its last finished shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from infinity_train.geometry import num_scales, pixel_size, resolve_template

from ..shards import ShardWriter, brace_pattern, finished_shards, listed_shards, split_entry, write_split_entry
from .captions import make_captions
from .generator import generate_scene
from .render import render_scene
from .spec import SPEC_VERSION, SceneSpec

DATASET_VERSION = 1  # bump when rendering, captions or the sample format change: old shards are then rewritten
IMAGE_FORMATS = ("png", "jpg")
JPEG_QUALITY = 95  # with 4:4:4 chroma: 4:2:0 would halve color resolution, which matters at 64 pixels
DEFAULT_SAMPLES_PER_SHARD = 1000


@dataclass(frozen=True)
class SyntheticSample:
    key: str
    spec: SceneSpec
    h_div_w: float
    image: Image.Image
    long_caption: str
    text: str

    def metadata(self) -> dict[str, Any]:
        """The sample's ``.json`` member."""
        return {
            "long_caption": self.long_caption,
            "text": self.text,
            "h_div_w": self.h_div_w,
            "width": self.image.width,
            "height": self.image.height,
            "spec": self.spec.to_dict(),
        }

    def files(self, image_format: str = "png") -> dict[str, bytes]:
        metadata = json.dumps(self.metadata(), sort_keys=True, separators=(",", ":")).encode()
        return {image_format: encode_image(self.image, image_format), "json": metadata}


@dataclass(frozen=True)
class WriteReport:
    split: str
    directory: Path
    pattern: str
    num_samples: int
    num_shards: int
    shards_written: int
    shards_skipped: int  # already complete from an earlier run with the same arguments
    manifest: Path

    def summary(self) -> str:
        if self.shards_written == 0:
            action = "nothing to do, all shards already complete"
        elif self.shards_skipped:
            action = f"wrote {self.shards_written}, kept {self.shards_skipped} already complete"
        else:
            action = f"wrote {self.shards_written}"
        return f"{self.split}: {self.num_samples} samples in {self.num_shards} shards ({action}) -> {self.directory / self.pattern}"


def sample_seed(seed: int, split: str, index: int) -> int:
    """Scene seed of sample ``index``: stable across runs and platforms, different per split."""
    digest = hashlib.sha256(f"infinity-synthetic/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")  # 48 bits: exact in JSON readers that use doubles


def synthetic_sample(seed: int, split: str, index: int, resolution: int, aspect_ratios: Sequence[float] = (1.0,)) -> SyntheticSample:
    """Sample ``index`` of a split; aspect templates are used round-robin so counts stay balanced."""
    h_div_w = resolve_template(aspect_ratios[index % len(aspect_ratios)])
    spec = generate_scene(sample_seed(seed, split, index))
    captions = make_captions(spec)
    return SyntheticSample(
        key=f"{split}-{index:08d}",
        spec=spec,
        h_div_w=h_div_w,
        image=render_scene(spec, resolution, h_div_w),
        long_caption=captions.long,
        text=captions.short,
    )


def encode_image(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=6)
    elif image_format == "jpg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return buffer.getvalue()


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    num_samples: int,
    resolution: int,
    aspect_ratios: Sequence[float] = (1.0,),
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    seed: int = 0,
    image_format: str = "png",
    split: str = "train",
    progress: Callable[[int], None] | None = None,
) -> WriteReport:
    """Write ``split`` as ``{split}-{000000..}.tar`` shards plus its ``manifest.json`` entry in ``out_dir``.

    Deterministic (same arguments, same bytes) and idempotent: shards finished by an earlier run
    with the same arguments are kept, so a complete dataset costs nothing to "write" again.
    ``progress`` is called with the number of samples done (written or kept) since its last call.
    """
    params = _validated_params(num_samples, resolution, aspect_ratios, samples_per_shard, seed, image_format)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    num_shards = -(-num_samples // samples_per_shard)
    metadata = {"source": "synthetic", "params": params}

    kept = finished_shards(directory, split, **metadata)[:num_shards]
    if not kept:
        _remove_listed_shards(directory, split)
    if progress is not None and kept:
        progress(sum(s.num_samples for s in kept))

    shards = list(kept)
    manifest_path = write_split_entry(directory, split, split_entry(split, shards, len(shards) == num_shards, **metadata))

    def on_shard_done(shard) -> None:
        shards.append(shard)
        write_split_entry(directory, split, split_entry(split, shards, len(shards) == num_shards, **metadata))

    start = len(kept) * samples_per_shard
    with ShardWriter(directory, split, samples_per_shard, first_shard=len(kept), on_shard_done=on_shard_done) as writer:
        for index in range(start, num_samples):
            sample = synthetic_sample(seed, split, index, resolution, params["aspect_ratios"])
            writer.write(sample.key, sample.files(image_format), h_div_w=sample.h_div_w)
            if progress is not None:
                progress(1)
    return WriteReport(
        split=split,
        directory=directory,
        pattern=brace_pattern(split, num_shards),
        num_samples=num_samples,
        num_shards=num_shards,
        shards_written=num_shards - len(kept),
        shards_skipped=len(kept),
        manifest=manifest_path,
    )


def _validated_params(
    num_samples: int, resolution: int, aspect_ratios: Sequence[float], samples_per_shard: int, seed: int, image_format: str
) -> dict[str, Any]:
    if num_samples < 1:
        raise ValueError(f"number of samples must be >= 1, got {num_samples}")
    if samples_per_shard < 1:
        raise ValueError(f"samples per shard must be >= 1, got {samples_per_shard}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if not aspect_ratios:
        raise ValueError("at least one aspect ratio is needed")
    num_scales(resolution)  # raises a clear error for an unsupported resolution
    templates = [resolve_template(a) for a in aspect_ratios]
    for t in templates:
        pixel_size(resolution, t)
    return {
        "dataset_version": DATASET_VERSION,
        "spec_version": SPEC_VERSION,
        "num_samples": num_samples,
        "resolution": resolution,
        "aspect_ratios": templates,
        "samples_per_shard": samples_per_shard,
        "seed": seed,
        "image_format": image_format,
    }


def _remove_listed_shards(directory: Path, split: str) -> None:
    """Before a fresh write, delete the shards an earlier job listed for this split, so none outlive it."""
    for name in listed_shards(directory, split):
        (directory / name).unlink(missing_ok=True)
