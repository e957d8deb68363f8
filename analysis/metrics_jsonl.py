"""Reading a run's ``metrics.jsonl``: one JSON object per line, each with a ``step`` and a ``time``.

Non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``; they are read
back as floats. A last line without its newline was cut by a kill mid-write and is ignored; any
other line that is not a JSON object with an integer ``step`` is an error naming file and line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.run_errors import RunDataError

Record = dict[str, Any]
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def read_metrics(path: str | Path) -> list[Record]:
    """The records of ``path`` in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunDataError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    lines = text.split("\n")
    cut_last = not text.endswith("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
        except ValueError as error:
            if cut_last and number == len(lines):
                break  # unterminated last line: the writer was killed mid-line
            raise RunDataError(f"{path}:{number}: corrupt metrics line: {error}") from None
    return records


def parse_record(line: str) -> Record:
    """One metrics line as a record; ValueError (one line) if it is not one."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    step = value.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"'step' must be an integer, got {step!r}")
    return {key: decode_number(v) for key, v in value.items()}


def decode_number(value: Any) -> Any:
    """The strings "nan", "inf", "-inf" as floats; everything else unchanged."""
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower(), value)
    return value
