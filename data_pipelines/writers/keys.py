"""Sample keys derived from file names: sanitized to the shard key rules and unique within a job.

``photos/Beach day.v2.JPG`` -> ``photos_Beach_day_v2``: the extension is dropped, every run of
characters outside letters, digits, ``_`` and ``-`` becomes one ``_`` (so no dot, separator or
``..`` survives), and long names are cut to ``MAX_KEY_LENGTH`` with a hash of the full name. Two
names that sanitize alike get a hash of the original name appended, so keys never collide; the
same names in the same order always give the same keys.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

from data_pipelines.shards import check_key

MAX_KEY_LENGTH = 80  # a USTAR member name holds 100 characters, and the extension needs room
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def sanitize_key(name: str) -> str:
    """A safe key for the file ``name`` (a relative or absolute path; the extension is dropped)."""
    path = PurePosixPath(name.replace("\\", "/"))
    stem = str(path.with_suffix("")) if path.suffix else str(path)
    key = _UNSAFE_RUN.sub("_", stem).strip("_") or "sample"
    if len(key) > MAX_KEY_LENGTH:
        key = f"{key[: MAX_KEY_LENGTH - 9]}-{_digest(name)}"
    return check_key(key)


class KeyMaker:
    """Hands out unique safe keys for a sequence of file names."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def make(self, name: str) -> str:
        key = sanitize_key(name)
        if key in self._used:
            key = check_key(f"{key[: MAX_KEY_LENGTH - 9]}-{_digest(name)}")
            serial = 2
            base = key
            while key in self._used:  # the same name twice (e.g. a repeated manifest row)
                key = check_key(f"{base}-{serial}")
                serial += 1
        self._used.add(key)
        return key
