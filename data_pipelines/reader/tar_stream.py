"""Raw samples of one shard, read with webdataset's tar iterators; damage ends the shard, not the run.

Members are kept as bytes (nothing is decoded here) and only the extensions the caller asks for are
kept at all, so no pickle or other unsafe payload is ever touched. Member names are used only as
grouping keys, never as file-system paths (nothing is extracted to disk).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from itertools import islice
from typing import Any

from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_iterator

from .stats import ReaderCounters

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
KEPT_EXTENSIONS = frozenset((*IMAGE_EXTENSIONS, "json", "txt"))

RawSample = dict[str, Any]  # {"__key__": str, "__url__": str, extension: bytes, ...}


def iter_shard_samples(
    url: str, counters: ReaderCounters, start: int = 0, stop: int | None = None, keep: frozenset[str] = KEPT_EXTENSIONS
) -> Iterator[RawSample]:
    """Samples ``start..stop`` (by position in the shard) of the shard at ``url``, with the members
    whose extension is in ``keep`` (every sample counts as a position, whatever members it has).

    A corrupt or truncated tar stream ends the shard (``tar_error``); a shard that cannot be
    opened, or whose pipe command fails, is ``shard_error``. Samples before the damage are kept.
    Python's streaming tar reader ends quietly at some damaged headers, so a shard that ends
    before ``stop`` (its manifest count) is a ``tar_error`` too.
    """
    try:
        stream = gopen(url, "rb")
    except Exception as error:  # noqa: BLE001 - any I/O failure of one shard must not stop training
        counters.skip("shard_error", url, error)
        return
    counters.add("shards_opened")
    tar_failed: list[BaseException] = []

    def stop_shard(error: BaseException) -> bool:
        tar_failed.append(error)  # the stream position is unreliable after a member read error
        return False

    def ignore_duplicate(error: BaseException) -> bool:
        counters.skip("duplicate_member", url, error)
        return True

    position = start
    files_seen = 0
    pending: RawSample | None = None  # one sample of look-ahead: the sample a tar error cuts is not yielded

    def counted(files: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal files_seen
        for f in files:
            files_seen += 1
            yield {**f, "__url__": url}

    try:
        files = counted(tar_file_iterator(stream, handler=stop_shard))
        samples = group_by_keys(files, suffixes=keep, handler=ignore_duplicate)
        for sample in islice(samples, start, stop):
            if pending is not None:
                position += 1
                yield pending
            pending = sample
        if stop is not None and position + (pending is not None) < stop and not tar_failed:
            tar_failed.append(EOFError(f"shard ended after {position + (pending is not None)} of {stop} samples"))
        if pending is not None and not tar_failed:
            position += 1
            yield pending
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        tar_failed.append(error)
    finally:
        try:
            stream.close()
        except Exception as error:  # noqa: BLE001 - e.g. a pipe command that exited non-zero
            counters.skip("shard_error", url, error)  # the cause of any tar error seen before
        else:
            if tar_failed:
                counters.skip("not_a_tar" if files_seen == 0 and start == 0 else "tar_error", url, tar_failed[0])
            elif files_seen == 0 and start == 0:
                counters.skip(_why_no_files(url), url)


def _why_no_files(url: str) -> str:
    """``empty_shard`` for a tar without entries, ``memberless_shard`` for one whose entries are no files."""
    from .sources import local_path

    path = local_path(url)
    if path is not None and path.is_file():
        try:
            with tarfile.open(path) as archive:
                if archive.getmembers():
                    return "memberless_shard"
        except (tarfile.TarError, OSError):
            pass
    return "empty_shard"
