"""Finding run directories under a runs folder and loading what each one holds.

A directory is a run when it has any of ``config.yaml``, ``run.json``, ``metrics.jsonl``,
``summary.json`` or a ``wandb/offline-run-*`` log. Run directories are not searched further,
except their budget branches ``<run>/branches/<images>/`` (cooldown branches of one
warmup-stable-decay run), which are runs of their own. Metrics come from ``metrics.jsonl``,
or from the wandb offline log when that file is missing.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analysis.metrics_jsonl import Record, decode_number, latest_records, read_metrics
from analysis.run_errors import RunDataError
from analysis.wandb_offline import offline_folders, read_offline_run

MARKERS = ("config.yaml", "run.json", "metrics.jsonl", "summary.json")
BRANCHES = "branches"
_NOT_SEARCHED = {"checkpoints", "logs", "wandb", "samples", BRANCHES}


@dataclass(frozen=True)
class RunData:
    """The raw contents of one run (or budget branch); ``summary`` is None until the run completes."""

    name: str
    path: Path | None
    config: dict[str, Any]
    identity: dict[str, Any]
    records: list[Record]
    summary: dict[str, Any] | None
    metrics_source: str
    parent: str | None = None
    branch_images: float = math.nan
    """Training images of a budget branch (its folder name); NaN for a main run."""
    summary_problems: tuple[str, ...] = ()
    """What was wrong with the types of summary.json (those values are left out of ``summary``)."""


def is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in MARKERS) or bool(offline_folders(path))


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every main run directory under ``root`` (``root`` itself when it is one), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise RunDataError(f"no such runs folder: {root}")
    if not root.is_dir():
        raise RunDataError(f"not a folder: {root}")
    found = []
    for folder, subfolders, _ in os.walk(root):
        path = Path(folder)
        if is_run_dir(path):
            found.append(path)
            subfolders.clear()
        else:
            subfolders[:] = sorted(s for s in subfolders if not s.startswith(".") and s not in _NOT_SEARCHED)
    return sorted(found)


def load_runs(root: str | Path) -> list[RunData]:
    """Every run and budget branch under ``root``; RunDataError if there is none or a file is unreadable."""
    root = Path(root)
    runs: list[RunData] = []
    for run_dir in find_run_dirs(root):
        name = _run_name(run_dir, root)
        runs.append(load_run(run_dir, name))
        for branch_dir, images in budget_branches(run_dir):
            runs.append(load_run(branch_dir, f"{name}/{BRANCHES}/{branch_dir.name}", parent=name, branch_images=images))
    if not runs:
        raise RunDataError(
            f"no runs found under {root}: a run directory holds config.yaml, run.json, metrics.jsonl, "
            "summary.json or wandb/offline-run-*"
        )
    return runs


def budget_branches(run_dir: Path) -> list[tuple[Path, float]]:
    """(folder, images) of each ``branches/<images>/`` run, smallest budget first."""
    folder = run_dir / BRANCHES
    if not folder.is_dir():
        return []
    branches = []
    for branch in folder.iterdir():
        if not branch.is_dir() or branch.name.startswith(".") or not any(branch.iterdir()):
            continue  # an empty folder: a branch not started yet
        try:
            images = int(branch.name.replace("_", ""))
        except ValueError:
            raise RunDataError(f"{branch}: a budget branch folder must be named by its number of training images") from None
        if images <= 0 or not is_run_dir(branch):
            raise RunDataError(f"{branch}: not a budget branch (needs a positive image count and a run directory inside)")
        branches.append((branch, float(images)))
    return sorted(branches, key=lambda item: item[1])


def load_run(path: Path, name: str, *, parent: str | None = None, branch_images: float = math.nan) -> RunData:
    config = _read_yaml(path / "config.yaml")
    identity = _read_json(path / "run.json") or {}
    summary = _read_json(path / "summary.json")
    problems: tuple[str, ...] = ()
    if summary is not None:
        summary, problems = _checked_summary(summary)
    metrics_path = path / "metrics.jsonl"
    if metrics_path.is_file():
        records, source = latest_records(read_metrics(metrics_path)), "metrics.jsonl"
    elif folders := offline_folders(path):
        wandb_run = read_offline_run(folders)
        records, source = wandb_run.records, "wandb offline"
        config = config or wandb_run.config
    else:
        records, source = [], "none"
    return RunData(name, path, config, identity, records, summary, source, parent, branch_images, problems)


_NUMERIC_SUMMARY = ("step", "images_seen", "tokens_seen", "train_flops", "wall_time_s", "skipped_steps", "world_size",
                    "params_total", "params_non_embedding", "depth", "width", "bits")  # fmt: skip


def _checked_summary(summary: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """summary.json without its wrong-typed values (the trainer writes numbers, a status text, a final object
    of numbers), and what was wrong."""
    problems, clean = [], dict(summary)
    for key in _NUMERIC_SUMMARY:
        value = decode_number(summary.get(key))
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"'{key}' is {type(value).__name__} {str(value)[:40]!r}, not a number")
            clean.pop(key)
    final = summary.get("final")
    if final is not None and not isinstance(final, dict):
        problems.append(f"'final' is {type(final).__name__}, not an object")
        clean.pop("final")
    elif isinstance(final, dict):
        bad = sorted(k for k, v in final.items() if isinstance(decode_number(v), (str, list, dict, bool)))
        if bad:
            problems.append(f"'final' has values that are not numbers ({', '.join(bad[:3])})")
            clean["final"] = {k: v for k, v in final.items() if k not in bad}
    for key in ("status", "task"):
        if key in summary and not isinstance(summary[key], str):
            problems.append(f"'{key}' is {type(summary[key]).__name__}, not text")
            clean.pop(key)
    return clean, tuple(problems)


def _run_name(run_dir: Path, root: Path) -> str:
    relative = run_dir.relative_to(root).as_posix()
    return run_dir.resolve().name if relative == "." else relative


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunDataError(f"cannot read {path}: {' '.join(str(error).split())}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunDataError(f"{path}: expected a mapping of config keys, got {type(value).__name__}")
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDataError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise RunDataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
