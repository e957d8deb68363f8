"""WebDataset tar shards: an atomic, deterministic, rolling writer, the manifest beside the shards,
and plain readers.

Layout of a shard directory (several splits may share it)::

    train-000000.tar  train-000001.tar  ...  val-000000.tar  manifest.json

A sample is consecutive tar members ``{key}.{ext}`` with the same key. Keys hold only letters,
digits, ``_`` and ``-``: WebDataset splits a member name at its first dot, and a separator would
escape the directory. Every shard is written under a hidden ``.{name}.partial`` name and renamed
when complete, so an interrupted job never leaves a truncated shard under a final name. Member
headers carry fixed metadata (mtime 0, uid/gid 0), so equal samples give byte-identical shards.

``manifest.json``::

    {"format": "infinity-train-shards", "version": 1,
     "splits": {"train": {"pattern": "train-{000000..000007}.tar", "num_shards": 8,
                          "num_samples": 8000, "aspect_ratios": {"1.0": 8000},
                          "complete": true,
                          "shards": [{"name": "train-000000.tar", "num_samples": 1000,
                                      "num_bytes": ..., "sha256": ..., "aspect_ratios": {...}}, ...],
                          ...writer metadata (e.g. "params")}}}

``complete`` is false while a job is still adding shards; the shards already listed are final.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import braceexpand

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "infinity-train-shards"
MANIFEST_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SAFE_EXTENSION = re.compile(r"^[A-Za-z0-9]+(\.[A-Za-z0-9]+)*$")


def check_key(key: str) -> str:
    """``key`` if it is a safe sample key (letters, digits, ``_``, ``-``), else ValueError."""
    if not _SAFE_NAME.match(key):
        raise ValueError(f"unsafe sample key {key!r}: use only letters, digits, '_' and '-' (no dots or path separators)")
    return key


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def brace_pattern(prefix: str, num_shards: int) -> str:
    """``train-{000000..000007}.tar`` for 8 shards (always braced, also for one shard)."""
    if num_shards < 1:
        raise ValueError("a shard pattern needs at least one shard")
    return f"{prefix}-{{{0:06d}..{num_shards - 1:06d}}}.tar"


def names_pattern(names: Sequence[str]) -> str | None:
    """A brace pattern of exactly these shard names (``train-{000000..000003}.tar``, ``{00000..00009}.tar``)
    when they are consecutive, equally padded numbers with one prefix; else None."""
    parts = [re.fullmatch(r"(.*?)(\d+)\.tar", name) for name in names]
    if not parts or not all(parts):
        return None
    prefixes = {m.group(1) for m in parts if m}
    widths = {len(m.group(2)) for m in parts if m}
    numbers = [int(m.group(2)) for m in parts if m]
    if len(prefixes) > 1 or len(widths) > 1 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    width = widths.pop()
    return f"{prefixes.pop()}{{{numbers[0]:0{width}d}..{numbers[-1]:0{width}d}}}.tar"


def aspect_key(h_div_w: float) -> str:
    """Manifest key of an aspect ratio: ``"1.0"``, ``"0.333"``."""
    return str(round(float(h_div_w), 3))


@dataclass
class ShardInfo:
    name: str
    num_samples: int = 0
    num_bytes: int = 0
    sha256: str = ""
    aspect_ratios: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShardInfo":
        return cls(**{k: data[k] for k in ("name", "num_samples", "num_bytes", "sha256", "aspect_ratios")})


class ShardWriter:
    """Writes samples into ``{prefix}-{index:06d}.tar``, starting a new shard every ``samples_per_shard``.

    ``on_shard_done`` is called with each shard's ShardInfo right after it is renamed into place.
    Leaving a ``with`` block by an exception discards the unfinished shard.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str,
        samples_per_shard: int,
        first_shard: int = 0,
        on_shard_done: Callable[[ShardInfo], None] | None = None,
    ) -> None:
        if not _SAFE_NAME.match(prefix):
            raise ValueError(f"unsafe shard prefix {prefix!r}: use only letters, digits, '_' and '-'")
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.samples_per_shard = samples_per_shard
        self.on_shard_done = on_shard_done
        self.shards: list[ShardInfo] = []
        self._next_index = first_shard
        self._tar: tarfile.TarFile | None = None
        self._current: ShardInfo | None = None
        self._aspects: Counter[str] = Counter()

    def write(self, key: str, files: Mapping[str, bytes], h_div_w: float | None = None) -> None:
        """Add one sample: ``files`` maps an extension (``"png"``, ``"json"``) to the member's bytes."""
        check_key(key)
        if self._tar is None:
            self._open_next()
        assert self._tar is not None and self._current is not None
        for extension, data in files.items():
            if not _SAFE_EXTENSION.match(extension):
                raise ValueError(f"unsafe file extension {extension!r} for sample {key!r}")
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._current.num_samples += 1
        if h_div_w is not None:
            self._aspects[aspect_key(h_div_w)] += 1
        if self._current.num_samples >= self.samples_per_shard:
            self._finish_current()

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard this writer completed."""
        if self._tar is not None:
            self._finish_current()
        return self.shards

    def abort(self) -> None:
        """Discard the unfinished shard, if any."""
        if self._tar is not None and self._current is not None:
            self._tar.close()
            self._partial_path(self._current.name).unlink(missing_ok=True)
            self._tar = self._current = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _partial_path(self, name: str) -> Path:
        return self.directory / f".{name}.partial"

    def _open_next(self) -> None:
        name = shard_name(self.prefix, self._next_index)
        self._next_index += 1
        self._current = ShardInfo(name)
        self._aspects = Counter()
        self._tar = tarfile.open(self._partial_path(name), "w", format=tarfile.USTAR_FORMAT)

    def _finish_current(self) -> None:
        assert self._tar is not None and self._current is not None
        self._tar.close()
        partial, final = self._partial_path(self._current.name), self.directory / self._current.name
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        self._current.num_bytes = partial.stat().st_size
        self._current.sha256 = file_sha256(partial)
        self._current.aspect_ratios = dict(sorted(self._aspects.items()))
        os.replace(partial, final)
        self.shards.append(self._current)
        done, self._tar, self._current = self._current, None, None
        if self.on_shard_done is not None:
            self.on_shard_done(done)


def split_entry(prefix: str, shards: list[ShardInfo], complete: bool, **metadata: Any) -> dict[str, Any]:
    """The manifest entry of one split: totals, brace pattern and per-shard counts, plus ``metadata``."""
    aspects: Counter[str] = Counter()
    for shard in shards:
        aspects.update(shard.aspect_ratios)
    return {
        "pattern": brace_pattern(prefix, len(shards)) if shards else None,
        "num_shards": len(shards),
        "num_samples": sum(s.num_samples for s in shards),
        "aspect_ratios": dict(sorted(aspects.items())),
        "complete": complete,
        "shards": [asdict(s) for s in shards],
        **metadata,
    }


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The directory's manifest, or an empty one if there is none yet."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "splits": {}}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an {MANIFEST_FORMAT} manifest")
    return manifest


def write_split_entry(directory: str | os.PathLike, split: str, entry: Mapping[str, Any]) -> Path:
    """Set one split's entry in ``manifest.json``, keeping the others (atomic replace under a file lock)."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    with _locked(directory / f".{MANIFEST_NAME}.lock"):
        manifest = read_manifest(directory)
        manifest["splits"][split] = dict(entry)
        manifest["splits"] = dict(sorted(manifest["splits"].items()))
        partial = directory / f".{MANIFEST_NAME}.partial"
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, path)
    return path


def finished_shards(directory: str | os.PathLike, split: str, **metadata: Any) -> list[ShardInfo]:
    """Shards of ``split`` already on disk from a job with the same ``metadata``, in order.

    A shard counts if it is listed in the manifest and its file has the recorded size; the
    list stops at the first one that does not. Different metadata means nothing is reusable.
    """
    entry = read_manifest(directory)["splits"].get(split)
    if entry is None or any(entry.get(k) != v for k, v in metadata.items()):
        return []
    reusable = []
    for data in entry["shards"]:
        path = Path(directory) / data["name"]
        if not path.is_file() or path.stat().st_size != data["num_bytes"]:
            break
        reusable.append(ShardInfo.from_dict(data))
    return reusable


def listed_shards(directory: str | os.PathLike, split: str) -> list[str]:
    """Names of the shards the manifest lists for ``split`` (empty if none)."""
    entry = read_manifest(directory)["splits"].get(split)
    return [s["name"] for s in entry["shards"]] if entry else []


def expand_shards(source: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Shard paths from a directory (its manifest, else every ``*.tar``) or a brace pattern.

    With a directory and a manifest, ``split`` picks one split; without, all splits are used.
    """
    path = Path(source)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
        if manifest_path.exists():
            splits = read_manifest(path)["splits"]
            if split is not None and split not in splits:
                raise ValueError(f"{path} has no split {split!r}; it has {', '.join(splits) or 'none'}")
            names = [s["name"] for name, e in splits.items() if split in (None, name) for s in e["shards"]]
        else:
            names = sorted(p.name for p in path.glob("*.tar") if split is None or p.name.startswith(f"{split}-"))
        paths = [path / n for n in names]
    else:
        paths = [Path(p) for p in braceexpand.braceexpand(str(source))]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) not found, e.g. {missing[0]}")
    if not paths:
        raise FileNotFoundError(f"no shards found in {source}")
    return paths


def iter_samples(paths: Iterable[str | os.PathLike]) -> Iterator[dict[str, Any]]:
    """Samples of the shards in order: ``{"__key__": key, "__shard__": name, ext: bytes, ...}``."""
    for path in paths:
        sample: dict[str, Any] | None = None
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, extension = member.name.partition(".")
                if sample is None or sample["__key__"] != key:
                    if sample is not None:
                        yield sample
                    sample = {"__key__": key, "__shard__": Path(path).name}
                extracted = tar.extractfile(member)
                assert extracted is not None
                sample[extension] = extracted.read()
        if sample is not None:
            yield sample


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
