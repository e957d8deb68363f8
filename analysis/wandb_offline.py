"""Reading a wandb offline run folder (``<run>/wandb/offline-run-*/``) without the network.

What an offline run writes (wandb 0.2x-0.3x, wandb-core): ``run-<id>.wandb``, the run's
transaction log, plus ``files/requirements.txt`` and debug logs; ``files/wandb-summary.json``
and ``files/config.yaml`` only appear once the run is synced or run online. So the log is what
is read here. Its framing is LevelDB's log format: a 7-byte file header (``:W&B``, magic
0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each a 7-byte header (CRC-32 of
type byte + payload, payload length as uint16, type: 1 full, 2 first, 3 middle, 4 last) and its
payload; fewer than 7 bytes left in a block are zero padding. A reassembled payload is one
``wandb.proto.wandb_internal_pb2.Record`` protobuf: ``run`` (with the config), ``config``
updates, ``history`` rows (items as JSON text; ``_step`` the step), ``summary`` updates, ``exit``.

A chunk cut at the end of the file (a killed run) ends the log; a bad header or checksum before
that is an error naming the file and byte offset.
"""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.metrics_jsonl import Record
from analysis.run_errors import RunDataError

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_BYTES = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbOfflineRun:
    """What one or more offline folders of a run hold: config, history (as metrics records), summary."""

    config: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    folders: list[Path] = field(default_factory=list)


def offline_folders(run_dir: Path) -> list[Path]:
    """``<run_dir>/wandb/offline-run-*`` folders holding a log, oldest first (the names start with a timestamp).

    Online runs keep the same log in ``wandb/run-*``; those are read too. ``latest-run`` (a link) is skipped.
    """
    root = run_dir / "wandb"
    if not root.is_dir():
        return []
    folders = [*root.glob("offline-run-*"), *root.glob("run-*")]
    return sorted((p for p in folders if p.is_dir() and not p.is_symlink() and any(p.glob("run-*.wandb"))), key=_started)


def _started(folder: Path) -> str:
    """The ``YYYYMMDD_HHMMSS-<id>[-n]`` part of the folder name, which sorts by start time."""
    return folder.name.removeprefix("offline-").removeprefix("run-")


def read_offline_run(folders: list[Path]) -> WandbOfflineRun:
    """Merge the folders of one run in order; a resumed segment replaces history from its first step on."""
    run = WandbOfflineRun(folders=list(folders))
    for folder in folders:
        segment = _read_folder(folder)
        if segment.records:
            first = segment.records[0]["step"]
            run.records = [r for r in run.records if r["step"] < first]
        run.records += segment.records
        run.config = _merge(run.config, segment.config)
        run.summary |= segment.summary
        run.exit_code = segment.exit_code if segment.exit_code is not None else run.exit_code
    return run


def _read_folder(folder: Path) -> WandbOfflineRun:
    logs = sorted(folder.glob("run-*.wandb"))
    run = WandbOfflineRun(folders=[folder])
    from wandb.proto import wandb_internal_pb2  # imported lazily: it imports wandb (about 0.5 s)

    for log in logs:
        for payload in read_log_payloads(log):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(payload)
            except Exception as error:  # noqa: BLE001 - protobuf raises its own DecodeError
                raise RunDataError(f"{log}: a record is not a wandb protobuf: {error}") from None
            _apply(run, record)
    return run


def _apply(run: WandbOfflineRun, record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run.config = _merge(run.config, _items(record.run.config.update))
    elif kind == "config":
        run.config = _merge(run.config, _items(record.config.update))
    elif kind == "history":
        values = _flat_items(record.history.item)
        step = values.pop("_step", record.history.step.num)
        row: Record = {"step": int(step)}
        if "_timestamp" in values:
            row["time"] = values["_timestamp"]
        row |= {k: v for k, v in values.items() if not k.startswith("_")}
        run.records.append(row)
    elif kind == "summary":
        run.summary |= {k: v for k, v in _flat_items(record.summary.update).items() if not k.startswith("_wandb")}
    elif kind == "exit":
        run.exit_code = int(record.exit.exit_code)


def read_log_payloads(path: Path) -> Iterator[bytes]:
    """The reassembled record payloads of one ``.wandb`` log, in order."""
    data = path.read_bytes()
    if not data.startswith(FILE_HEADER):
        raise RunDataError(f"{path}: not a wandb transaction log (header {data[:7]!r})")
    position, pending = len(FILE_HEADER), bytearray()
    while True:
        left_in_block = BLOCK_BYTES - position % BLOCK_BYTES
        if left_in_block < CHUNK_HEADER.size:
            position += left_in_block  # block trailer padding
            continue
        if position + CHUNK_HEADER.size > len(data):
            return
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, position)
        start, end = position + CHUNK_HEADER.size, position + CHUNK_HEADER.size + length
        if kind == 0 and length == 0 and not any(data[position:position + left_in_block]):
            position += left_in_block  # zeroed rest of a block
            continue
        if end > len(data):
            return  # chunk cut by a kill
        payload = data[start:end]
        if kind not in (FULL, FIRST, MIDDLE, LAST) or zlib.crc32(payload, zlib.crc32(bytes([kind]))) != checksum:
            raise RunDataError(f"{path}: corrupt chunk at byte {position} (bad type or checksum)")
        position = end
        if kind in (FULL, FIRST):
            pending = bytearray(payload)
        else:
            pending += payload
        if kind in (FULL, LAST):
            yield bytes(pending)
            pending = bytearray()


def _flat_items(items: Any) -> dict[str, Any]:
    """History/summary items as {key: value}; nested keys joined with '/'."""
    return {(item.key or "/".join(item.nested_key)): _json_value(item.value_json) for item in items}


def _items(items: Any) -> dict[str, Any]:
    """Config items as a nested dict (wandb's own ``_wandb`` entry dropped)."""
    out: dict[str, Any] = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        if path[0] == "_wandb":
            continue
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _json_value(item.value_json)
    return out


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)  # wandb writes NaN / Infinity / -Infinity, which json.loads accepts
    except json.JSONDecodeError:
        return text


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
