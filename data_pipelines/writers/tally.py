"""What a shard-writing job did: samples written, inputs skipped per reason, and notes.

Every skipped input is counted under one reason and the first few of each reason are logged (then
every ``log_every``-th), so nothing is dropped silently and a broken input cannot flood the log.
Notes count things worth knowing that lose no data (e.g. a caption file without an image).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

logger = logging.getLogger("data_pipelines.writers")

SKIP_REASONS: dict[str, str] = {
    "missing_caption": "no non-empty caption (no sidecar .txt/.json, or an empty one)",
    "invalid_caption": "a caption is not a string, or a .txt caption is not UTF-8",
    "bad_json": "a sidecar .json is not a UTF-8 JSON object",
    "missing_image": "the image file does not exist or cannot be read",
    "bad_image": "the image does not decode (damaged, cut short, empty or too large)",
    "unsupported_format": "an image format the reader does not take (GIF, BMP, TIFF, ...)",
    "bad_row": "a manifest row is not an object, is not valid JSON, or has no image_path",
}

NOTES: dict[str, str] = {
    "caption_without_image": "a sidecar caption file whose image is missing",
    "hidden_ignored": "a hidden file or folder (name starting with '.') that was not read",
    "h_div_w_mismatch": "a manifest h_div_w differs from the image's own (the image's is recorded)",
    "h_div_w_invalid": "a manifest h_div_w is not a positive number (the image's is recorded)",
}


class WriteTally:
    def __init__(self, log_first: int = 5, log_every: int = 1000) -> None:
        self.written = 0
        self.skipped: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.log_first, self.log_every = log_first, log_every

    def skip(self, reason: str, where: str, detail: Any = None) -> None:
        if reason not in SKIP_REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.skipped[reason] += 1
        self._log("skipped", reason, self.skipped[reason], where, detail)

    def note(self, name: str, where: str, detail: Any = None) -> None:
        if name not in NOTES:
            raise KeyError(f"unknown note {name!r}")
        self.notes[name] += 1
        self._log("note", name, self.notes[name], where, detail)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "skipped_total": self.skipped_total,
            "skipped": dict(sorted(self.skipped.items())),
            "notes": dict(sorted(self.notes.items())),
        }

    def skip_line(self) -> str:
        """``skipped 3: bad_image=1, missing_caption=2`` (or ``skipped 0``)."""
        parts = ", ".join(f"{reason}={count}" for reason, count in sorted(self.skipped.items()))
        line = f"skipped {self.skipped_total}" + (f": {parts}" if parts else "")
        if self.notes:
            line += "; notes: " + ", ".join(f"{name}={count}" for name, count in sorted(self.notes.items()))
        return line

    def _log(self, kind: str, name: str, count: int, where: str, detail: Any) -> None:
        if count <= self.log_first or count % self.log_every == 0:
            suffix = f": {detail}"[:300] if detail is not None else ""
            logger.warning("%s (%s, occurrence %d) %s%s", kind, name, count, where, suffix)
