"""Counters of a reader worker and rate-limited logging of bad data.

Every skipped sample or cut-short shard increments ``skipped/<reason>``; the first few events of
each reason are logged, then only every ``log_every``-th, so a badly broken data set cannot flood
the logs. Counters travel with each batch to the main process, which sums them in ``stats()``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping

logger = logging.getLogger("data_pipelines.reader")

SKIP_PREFIX = "skipped/"

SKIP_REASONS: dict[str, str] = {
    "shard_error": "a shard could not be opened or its pipe command failed (rest of the shard lost)",
    "tar_error": "a corrupt or truncated tar stream (rest of the shard lost, the sample it cut included)",
    "not_a_tar": "a shard that is not a tar archive at all (e.g. random bytes): nothing read from it",
    "empty_shard": "a tar archive without members: no samples",
    "memberless_shard": "a tar archive whose entries are no files (only folders, links, ...): no samples",
    "duplicate_member": "a sample repeated a member extension (the repeat is ignored)",
    "missing_image": "no .jpg/.jpeg/.png/.webp member",
    "missing_json": "neither a .json nor a .txt member",
    "bad_json": ".json is not a UTF-8 JSON object",
    "missing_caption": "no non-empty caption (json long_caption, caption or text, or a .txt member)",
    "invalid_caption": "json long_caption or caption is not a string, or .txt is not UTF-8",
    "bad_image": "image header unreadable, not JPEG/PNG/WebP, empty, too large, or data cut short",
    "image_decode_error": "image pixels failed to decode (replaced by a batch mate or the last good image)",
    "missing_tensor": "a cached sample lacks one of its .safetensors members",
    "bad_tensor": "a cached tensor is unreadable, not finite, or has the wrong dtype or shape",
    "cache_mismatch": "a cached sample was made for another resolution, aspect template or model",
    "unsafe_key": "the sample key cannot name a shard member (see data_pipelines.shards.check_key)",
}


class ReaderCounters:
    """Named integer counters plus rate-limited warnings for skipped data."""

    def __init__(self, log_first: int = 5, log_every: int = 1000, context: str = "") -> None:
        self.counts: Counter[str] = Counter()
        self.log_first = log_first
        self.log_every = log_every
        self.context = context
        self.logging_enabled = True

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def skip(self, reason: str, where: str, error: BaseException | str | None = None) -> None:
        if reason not in SKIP_REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        name = SKIP_PREFIX + reason
        self.counts[name] += 1
        count = self.counts[name]
        if self.logging_enabled and (count <= self.log_first or count % self.log_every == 0):
            detail = f": {error!r}"[:300] if error is not None else ""
            logger.warning("%sskipped (%s, occurrence %d) %s%s", self.context, reason, count, where, detail)

    def reset(self) -> None:
        self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def sum_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def with_skip_total(counts: Mapping[str, int]) -> dict[str, int]:
    """``counts`` plus ``skipped_total`` over every ``skipped/`` reason."""
    result = dict(counts)
    result["skipped_total"] = sum(v for k, v in counts.items() if k.startswith(SKIP_PREFIX))
    return result
