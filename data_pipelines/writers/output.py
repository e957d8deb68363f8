"""Writing checked image-caption samples into shards plus their manifest entry.

Every writer (folder, manifest) turns its input into ``Candidate`` samples; this module reads and
checks each image, skips and counts what cannot be used, and writes the rest, in input order, as
``{split}-NNNNNN.tar`` shards with ``ShardWriter``. A sample is ``{key}.{jpg|png|webp}`` (the
image's bytes, unchanged) and ``{key}.json``::

    {"long_caption": ..., "text": short caption or null, "h_div_w": height / width,
     "width": ..., "height": ..., "source": the input file as named by the input}

The same inputs give byte-identical shards (sorted inputs, canonical JSON, fixed tar headers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipelines.reader.metadata import Captions
from data_pipelines.shards import ShardInfo, ShardWriter, check_key, listed_shards, read_manifest, split_entry, write_split_entry

from .images import ImageInfo, ImageRejected, inspect_image
from .tally import WriteTally

ASPECT_TOLERANCE = 0.01  # relative difference of a declared h_div_w from the image's that is noted


@dataclass(frozen=True)
class Candidate:
    """One input sample whose image has not been read yet."""

    key: str
    where: str  # names the input in log lines: a file, or a manifest row
    source: str  # recorded in the sample's json
    read_image: Callable[[], bytes]
    captions: Captions
    declared_h_div_w: float | None = None


@dataclass(frozen=True)
class WriteResult:
    directory: Path
    split: str
    shards: list[ShardInfo]
    tally: WriteTally

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    def summary(self) -> str:
        pattern = split_entry(self.split, self.shards, True)["pattern"] if self.shards else "no shards"
        return f"{self.split}: wrote {self.num_samples} samples in {len(self.shards)} shards -> {self.directory / pattern}; {self.tally.skip_line()}"


def prepare_output(directory: str | os.PathLike, split: str, overwrite: bool) -> Path:
    """The output directory, ready for a fresh ``split``: refuses to replace a listed split unless
    ``overwrite``, which first deletes that split's listed shards."""
    check_key(split)  # it names the shards
    directory = Path(directory)
    if split in read_manifest(directory)["splits"]:
        if not overwrite:
            raise FileExistsError(f"{directory} already has a split {split!r} in its manifest; pass --overwrite to replace it")
        for name in listed_shards(directory, split):
            (directory / name).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def sample_files(candidate: Candidate, image: bytes, info: ImageInfo) -> dict[str, bytes]:
    metadata = {
        "long_caption": candidate.captions.long,
        "text": candidate.captions.short,
        "h_div_w": info.h_div_w,
        "width": info.width,
        "height": info.height,
        "source": candidate.source,
    }
    encoded = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return {info.extension: image, "json": encoded}


def write_candidates(
    candidates: Iterable[Candidate],
    directory: str | os.PathLike,
    split: str,
    samples_per_shard: int,
    tally: WriteTally,
    metadata: dict[str, Any],
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WriteResult:
    """Check and write ``candidates``; the manifest entry is updated after every shard (``complete``
    false until the end) and finally records the skip counts."""
    directory = prepare_output(directory, split, overwrite)
    shards: list[ShardInfo] = []

    def record(complete: bool) -> None:
        write_split_entry(directory, split, split_entry(split, shards, complete, **metadata, **tally.summary()))

    def on_shard_done(shard: ShardInfo) -> None:
        shards.append(shard)
        record(complete=False)

    with ShardWriter(directory, split, samples_per_shard, on_shard_done=on_shard_done) as writer:
        for candidate in candidates:
            checked = _checked_image(candidate, tally)
            if checked is not None:
                image, info = checked
                writer.write(candidate.key, sample_files(candidate, image, info), h_div_w=info.h_div_w)
                tally.written += 1
            if progress is not None:
                progress(1)
    record(complete=True)  # also when nothing could be written: the manifest then says so
    return WriteResult(directory, split, shards, tally)


def _checked_image(candidate: Candidate, tally: WriteTally) -> tuple[bytes, ImageInfo] | None:
    try:
        image = candidate.read_image()
    except OSError as error:
        tally.skip("missing_image", candidate.where, error)
        return None
    try:
        info = inspect_image(image)
    except ImageRejected as rejected:
        tally.skip(rejected.reason, candidate.where, rejected)
        return None
    declared = candidate.declared_h_div_w
    if declared is not None and abs(declared - info.h_div_w) > ASPECT_TOLERANCE * info.h_div_w:
        tally.note("h_div_w_mismatch", candidate.where, f"declared {declared}, image {info.height}/{info.width}")
    return image, info
