"""Samples of a manifest in the reference Infinity format: a CSV file, or JSON lines (``.jsonl``;
a ``.json`` file may also hold one array of objects), with ``image_path``, ``h_div_w``,
``long_caption`` and an optional short ``text`` per row.

Relative image paths resolve against the manifest's folder. Rows are written in manifest order.
The image's own h/w is recorded; a declared ``h_div_w`` that disagrees is only noted.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from data_pipelines.reader.metadata import MetadataError, caption_fields

from .keys import KeyMaker
from .output import Candidate
from .tally import WriteTally

REQUIRED_COLUMN = "image_path"
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".json")


def manifest_candidates(path: str | os.PathLike, tally: WriteTally) -> Iterator[Candidate]:
    """Candidates of the manifest's rows; a missing file or a CSV without ``image_path`` fails now,
    before anything is written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = _csv_rows(path)
    elif suffix in JSON_SUFFIXES:
        rows = _json_rows(path, tally)
    else:
        raise ValueError(f"manifest {path} must be .csv, .jsonl or .json, not {suffix or 'without a suffix'}")
    return _candidates(path, rows, tally)


def _candidates(path: Path, rows: Iterator[tuple[int, dict[str, Any]]], tally: WriteTally) -> Iterator[Candidate]:
    base = path.parent
    keys = KeyMaker()
    for number, row in rows:
        where = f"{path.name} row {number}"
        image_path = row.get(REQUIRED_COLUMN)
        if not isinstance(image_path, str) or not image_path.strip():
            tally.skip("bad_row", where, f"no {REQUIRED_COLUMN}")
            continue
        image_path = image_path.strip()
        where = f"{where} ({image_path})"
        try:
            captions = caption_fields(row)
        except MetadataError as error:
            tally.skip(error.reason, where, error)
            continue
        resolved = Path(image_path) if os.path.isabs(image_path) else base / image_path
        yield Candidate(
            key=keys.make(image_path),
            where=where,
            source=image_path,
            read_image=resolved.read_bytes,
            captions=captions,
            declared_h_div_w=_declared_aspect(row.get("h_div_w"), where, tally),
        )


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    f = open(path, newline="", encoding="utf-8-sig")
    reader = csv.DictReader(f)
    try:
        columns = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as error:
        f.close()
        raise ValueError(f"manifest {path} is not a UTF-8 CSV file: {error}") from None
    if REQUIRED_COLUMN not in columns:
        f.close()
        raise ValueError(f"manifest {path} has no {REQUIRED_COLUMN!r} column; its columns: {', '.join(columns) or 'none'}")

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with f:
            yield from enumerate(reader, start=1)

    return rows()


def _json_rows(path: Path, tally: WriteTally) -> Iterator[tuple[int, dict[str, Any]]]:
    f = open(path, "rb")
    is_array = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    f.seek(0)
    if is_array:
        with f:
            try:
                items = json.loads(f.read().decode("utf-8-sig"))
            except ValueError as error:  # includes UnicodeDecodeError
                raise ValueError(f"manifest {path} is not valid UTF-8 JSON: {error}") from None
        return _objects(path, enumerate(items, start=1), tally)
    return _objects(path, _json_lines(path, f, tally), tally)


def _json_lines(path: Path, f: BinaryIO, tally: WriteTally) -> Iterator[tuple[int, Any]]:
    with f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except ValueError as error:  # includes UnicodeDecodeError
                tally.skip("bad_row", f"{path.name} line {number}", error)


def _objects(path: Path, items: Iterator[tuple[int, Any]], tally: WriteTally) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, item in items:
        if isinstance(item, dict):
            yield number, item
        else:
            tally.skip("bad_row", f"{path.name} row {number}", f"a {type(item).__name__}, not an object")


def _declared_aspect(value: Any, where: str, tally: WriteTally) -> float | None:
    if value is None or value == "":
        return None
    try:
        declared = float(value)
    except (TypeError, ValueError):
        declared = math.nan
    if not math.isfinite(declared) or declared <= 0:
        tally.note("h_div_w_invalid", where, repr(value))
        return None
    return declared
