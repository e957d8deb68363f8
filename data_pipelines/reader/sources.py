"""Shard lists: expanding shard specifications into URLs and finding each shard's sample count.

A shard specification is a brace pattern (``/data/train-{000000..000099}.tar``, several joined
with ``::``), a directory holding shards and a ``manifest.json``, a ``pipe:`` command that writes
a tar to stdout (``pipe:aws s3 cp s3://bucket/train-000001.tar -``), or a list of those.
Sample counts come from a ``manifest.json`` (given, or beside local shards); local shards that no
manifest lists are counted by reading their tar headers.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

MANIFEST_NAME = "manifest.json"
ShardSpec = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass(frozen=True)
class Shard:
    url: str
    num_samples: int | None
    aspect_counts: Mapping[str, int] | None = None  # manifest aspect key ("0.75") -> samples


@dataclass(frozen=True)
class Source:
    """One data source of a weighted mixture (resampled mode)."""

    shards: ShardSpec
    weight: float = 1.0
    manifest: str | os.PathLike | None = None
    split: str | None = None


def expand_shard_urls(spec: ShardSpec, split: str | None = None) -> list[str]:
    """Shard URLs of a brace pattern, ``::`` list, directory, ``pipe:`` command or list of those."""
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if not text.startswith("pipe:") and Path(text).is_dir():
            return _directory_shards(Path(text), split)
        urls = expand_urls(text)
    else:
        urls = [url for item in spec for url in expand_shard_urls(item, split)]
    if not urls:
        raise ValueError(f"no shards in {spec!r}")
    return urls


def resolve_shards(spec: ShardSpec, manifest: str | os.PathLike | None = None, split: str | None = None) -> list[Shard]:
    """Shards of ``spec`` with their sample counts (None where no manifest lists a remote shard)."""
    urls = expand_shard_urls(spec, split)
    explicit = _manifest_index(Path(manifest)) if manifest is not None else {}
    shards = []
    for url in urls:
        name = shard_name(url)
        local = local_path(url)
        entry = explicit.get(name)
        if entry is None and local is not None:
            entry = _manifest_index(local.parent / MANIFEST_NAME).get(name)
        if entry is not None:
            shards.append(Shard(url, int(entry["num_samples"]), entry.get("aspect_ratios") or None))
        elif local is not None and local.is_file():
            stat = local.stat()
            shards.append(Shard(url, count_tar_samples(str(local), stat.st_size, stat.st_mtime_ns)))
        else:
            shards.append(Shard(url, None))
    return shards


def shard_name(url: str) -> str:
    """The file name of a shard URL: ``train-000001.tar`` for a path, URL or ``pipe:`` command."""
    if url.startswith("pipe:"):
        try:
            tokens = shlex.split(url[5:])
        except ValueError:
            tokens = url[5:].split()
        candidates = [t for t in tokens if re.search(r"\.tar(\.\w+)?$", t)]
        return posixpath.basename(candidates[-1]) if candidates else url
    return posixpath.basename(urlparse(url).path if "://" in url else url)


def local_path(url: str) -> Path | None:
    """The local file a URL reads (for ``pipe:`` commands: its last token if that is a local file)."""
    if url.startswith("pipe:"):
        try:
            tokens = shlex.split(url[5:])
        except ValueError:
            return None
        files = [Path(t) for t in tokens if "://" not in t and Path(t).is_file()]
        return files[-1] if files else None
    if url.startswith("file:"):
        return Path(urlparse(url).path)
    if "://" in url:
        return None
    return Path(url)


@lru_cache(maxsize=1024)
def count_tar_samples(path: str, size: int, mtime_ns: int) -> int:
    """Samples (runs of members with one key) in a local tar, from its headers; size/mtime key the cache."""
    del size, mtime_ns
    count, last_key = 0, None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isreg() or re.match(r"__[^/]*__($|/)", member.name):
                    continue
                key, _ = base_plus_ext(member.name)
                if key is not None and key != last_key:
                    count, last_key = count + 1, key
    except (tarfile.TarError, OSError, EOFError):
        pass  # a truncated shard counts what is readable; the reader records the error when it gets there
    return count


def _directory_shards(directory: Path, split: str | None) -> list[str]:
    manifest = _read_manifest(directory / MANIFEST_NAME)
    if manifest is not None:
        splits = manifest.get("splits", {})
        if split is not None and split not in splits:
            raise ValueError(f"{directory} has no split {split!r}; it has {', '.join(splits) or 'none'}")
        names = [s["name"] for name, entry in splits.items() if split in (None, name) for s in entry.get("shards", [])]
    else:
        names = sorted(p.name for p in directory.glob("*.tar") if split is None or p.name.startswith(f"{split}-"))
    if not names:
        raise ValueError(f"no shards in directory {directory}" + (f" for split {split!r}" if split else ""))
    return [str(directory / name) for name in names]


def _manifest_index(path: Path) -> dict[str, Mapping[str, Any]]:
    """Shard name -> its manifest entry (every split), or empty if there is no manifest."""
    stat = path.stat() if path.is_file() else None
    return _cached_manifest_index(str(path), stat.st_mtime_ns if stat else None)


@lru_cache(maxsize=64)
def _cached_manifest_index(path: str, mtime_ns: int | None) -> dict[str, Mapping[str, Any]]:
    manifest = _read_manifest(Path(path)) if mtime_ns is not None else None
    if manifest is None:
        return {}
    return {s["name"]: s for entry in manifest.get("splits", {}).values() for s in entry.get("shards", [])}


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"unreadable shard manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ValueError(f"{path} is not a shard manifest (expected a 'splits' object)")
    return manifest
