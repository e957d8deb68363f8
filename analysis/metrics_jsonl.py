"""Reading a run's ``metrics.jsonl``: one JSON object per line, each with a ``step`` and a ``time``.

Non-finite floats are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``; they are read
back as floats. A last line without its newline was cut by a kill mid-write and is ignored; any
other line that is not a JSON object with an integer ``step`` is an error naming file and line.

Files written before the trainer superseded re-run steps on resume hold a step's records twice;
``latest_records`` keeps the last of each (step, kind) and drops what a restart re-logged.
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


def _kind(record: Record) -> frozenset[str]:
    """What a record is (training, validation, samples, ...): the namespaces of its metric names."""
    return frozenset(key.split("/", 1)[0] for key in record if key not in ("step", "time"))


def latest_records(records: list[Record]) -> list[Record]:
    """The records of a file a restarted run appended to, as if it had never been interrupted: a record of
    step ``s`` supersedes every earlier record of a later step (the restart went back to ``s``) and every
    earlier record of step ``s`` of the same kind. Records of a file without restarts are all kept, in order."""
    kept: list[Record] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    for record in records:
        step, kind = record["step"], _kind(record)
        if kept and (kept[-1]["step"] > step or (step, kind) in seen):
            kept = [r for r in kept if r["step"] < step or (r["step"] == step and _kind(r) != kind)]
            seen = {(r["step"], _kind(r)) for r in kept}
        kept.append(record)
        seen.add((step, kind))
    return kept
