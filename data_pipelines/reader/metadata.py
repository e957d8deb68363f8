"""A sample's metadata and captions, from whichever members it has.

Two conventions are read:

- infinity-train / reference Infinity: ``{key}.json`` with ``long_caption`` and a short ``text``;
- img2dataset: ``{key}.txt`` holding the caption and/or ``{key}.json`` with a ``caption`` field.

The long caption is the first non-empty of json ``long_caption``, json ``caption``, the ``.txt``
member, json ``text``; the short caption is json ``text`` (None when absent or empty). The same
rule is used by the reader, the shard validator and the folder/manifest writers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class MetadataError(ValueError):
    """Unusable metadata; ``reason`` is the reader's skip reason (see stats.SKIP_REASONS)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Captions:
    long: str
    short: str | None


def parse_json_object(data: bytes) -> dict[str, Any]:
    """A ``.json`` member as a dict, else MetadataError("bad_json")."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise MetadataError("bad_json", repr(error)) from None
    if not isinstance(value, dict):
        raise MetadataError("bad_json", "not a JSON object")
    return value


def caption_fields(metadata: dict[str, Any], txt: bytes | None = None) -> Captions:
    """The long and short captions by the rule above; MetadataError when there is no usable one."""
    for field in ("long_caption", "caption"):
        value = metadata.get(field)
        if value is not None and not isinstance(value, str):
            raise MetadataError("invalid_caption", f"{field} is a {type(value).__name__}")
    text_member = None
    if txt is not None:
        try:
            text_member = txt.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MetadataError("invalid_caption", f".txt is not UTF-8: {error}") from None
    short = _stripped(metadata.get("text"))
    candidates = (_stripped(metadata.get("long_caption")), _stripped(metadata.get("caption")), _stripped(text_member), short)
    long = next((c for c in candidates if c), None)
    if long is None:
        raise MetadataError("missing_caption", "no non-empty long_caption, caption, .txt or text")
    return Captions(long, short)


def _stripped(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
