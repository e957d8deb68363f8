"""Validating existing WebDataset shards (e.g. img2dataset output) in place and writing the
``manifest.json`` the reader needs beside them; the shards themselves are not touched.

Each shard is read exactly as the reader reads it (the same tar stream, member filter and sample
checks), and every image is decoded in full. The manifest's per-shard ``num_samples`` counts
every sample position the reader will step through, readable or not, so the reader's epoch split
stays exact; ``aspect_ratios`` count the samples the reader will bucket (those that pass its header
and caption checks), which keeps its batch count tight. A shard cut short is listed with
the samples before the damage. img2dataset's ``{shard}_stats.json`` is cross-checked when present
(its ``successes`` should equal the shard's samples); its parquet files are not read.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import braceexpand

from data_pipelines.reader.samples import prepare_sample
from data_pipelines.reader.stats import ReaderCounters, with_skip_total
from data_pipelines.reader.tar_stream import iter_shard_samples
from data_pipelines.shards import (
    ShardInfo,
    aspect_key,
    check_key,
    file_sha256,
    names_pattern,
    read_manifest,
    split_entry,
    write_split_entry,
)
from infinity_train.geometry import ASPECT_RATIOS

from .images import ImageRejected, inspect_image

VALIDATION_NOTES = {
    "unsafe_keys": "sample keys with characters outside [A-Za-z0-9_-] (readable, but the cache job skips them)",
    "stats_mismatch": "shards whose img2dataset _stats.json 'successes' differ from the samples found",
    "parquet_not_read": "img2dataset parquet files present (not read; _stats.json is)",
}


@dataclass
class ValidationResult:
    directory: Path
    split: str
    shards: list[ShardInfo] = field(default_factory=list)
    usable: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # reader counters, skipped/<reason> included
    notes: Counter[str] = field(default_factory=Counter)

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    def skipped(self) -> dict[str, int]:
        return {k.removeprefix("skipped/"): v for k, v in sorted(self.counts.items()) if k.startswith("skipped/")}

    def summary(self) -> dict[str, Any]:
        return {
            "shards": len(self.shards),
            "samples": self.num_samples,
            "usable": self.usable,
            "skipped_total": with_skip_total(self.counts)["skipped_total"],
            "skipped": self.skipped(),
            "notes": dict(sorted(self.notes.items())),
        }


def local_shard_paths(spec: str | os.PathLike) -> list[Path]:
    """Every ``*.tar`` of a directory (sorted), or the files of a brace pattern; all local, in one directory."""
    text = os.fspath(spec)
    if text.startswith("pipe:") or "://" in text:
        raise ValueError(f"validate-wds writes manifest.json beside the shards, so they must be local files, not {text!r}")
    path = Path(text)
    paths = sorted(path.glob("*.tar")) if path.is_dir() else [Path(p) for p in braceexpand.braceexpand(text)]
    if not paths:
        raise FileNotFoundError(f"no .tar shards in {text}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) not found, e.g. {missing[0]}")
    if len({p.parent.resolve() for p in paths}) > 1:
        raise ValueError("the shards must be in one directory: its manifest.json lists them")
    return paths


def validate_webdataset(
    spec: str | os.PathLike,
    split: str = "train",
    log_first: int = 5,
    log_every: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ValidationResult:
    """Validate the shards of ``spec`` and set ``split`` in their directory's manifest to them."""
    check_key(split)
    paths = local_shard_paths(spec)
    directory = paths[0].parent
    _refuse_double_listing(directory, split, {p.name for p in paths})
    result = ValidationResult(directory, split)
    for path in paths:
        counters = ReaderCounters(log_first, log_every, context=f"{path.name}: ")
        result.shards.append(_validate_shard(path, counters, result))
        result.counts.update(counters.snapshot())
        if progress is not None:
            progress(result.shards[-1].num_samples)
    result.notes["parquet_not_read"] = sum(p.with_suffix(".parquet").is_file() for p in paths)
    result.notes = Counter({k: v for k, v in result.notes.items() if v})
    entry = split_entry(split, result.shards, complete=True, source="webdataset", validation=result.summary())
    entry["pattern"] = names_pattern([p.name for p in paths])
    write_split_entry(directory, split, entry)
    return result


def _validate_shard(path: Path, counters: ReaderCounters, result: ValidationResult) -> ShardInfo:
    positions, aspects = 0, Counter()
    for raw in iter_shard_samples(str(path), counters):
        positions += 1
        try:
            check_key(raw["__key__"])
        except ValueError:
            result.notes["unsafe_keys"] += 1
        sample = prepare_sample(raw, ASPECT_RATIOS, counters)
        if sample is None:
            continue
        aspects[aspect_key(sample.height / sample.width)] += 1  # the reader buckets it by its header
        try:
            inspect_image(sample.image)  # prepare_sample read the header only: decode every pixel
        except ImageRejected as rejected:
            counters.skip("image_decode_error", f"{path.name} sample {sample.key!r}", rejected)
            continue
        result.usable += 1
    _check_img2dataset_stats(path, positions, result)
    stat = path.stat()
    return ShardInfo(path.name, positions, stat.st_size, file_sha256(path), dict(sorted(aspects.items())))


def _check_img2dataset_stats(path: Path, positions: int, result: ValidationResult) -> None:
    stats_path = path.with_name(f"{path.stem}_stats.json")
    if not stats_path.is_file():
        return
    try:
        successes = json.loads(stats_path.read_text()).get("successes")
    except (OSError, ValueError, AttributeError):
        successes = None
    if successes != positions:
        result.notes["stats_mismatch"] += 1


def _refuse_double_listing(directory: Path, split: str, names: set[str]) -> None:
    """The reader reads every split of a directory when none is named: a shard listed twice would be read twice."""
    for other, entry in read_manifest(directory)["splits"].items():
        shared = names & {s["name"] for s in entry.get("shards", [])}
        if other != split and shared:
            raise ValueError(f"{directory / 'manifest.json'} already lists {sorted(shared)[0]} under split {other!r}")
