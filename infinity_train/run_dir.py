"""The run directory, the source of truth of a run:

    <run_dir>/config.yaml      resolved config (the previous one is kept as config.prev-N.yaml if it changed)
    <run_dir>/run.json         identity: run name and the wandb run id a resumed run continues
    <run_dir>/metrics.jsonl    one JSON object per logged step, always written (rank 0)
    <run_dir>/logs/            one log file per rank
    <run_dir>/checkpoints/     checkpoints
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDirectory:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).resolve()

    @classmethod
    def for_config(cls, cfg: DictConfig, root: str | os.PathLike[str] = "runs") -> "RunDirectory":
        return cls(cfg.run_dir if cfg.get("run_dir") else Path(root) / str(cfg.name))

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def create(self, cfg: DictConfig) -> "RunDirectory":
        """Make the folders and record the resolved config and the run identity (idempotent)."""
        for folder in (self.path, self.logs_dir, self.checkpoints_dir):
            folder.mkdir(parents=True, exist_ok=True)
        text = OmegaConf.to_yaml(cfg, resolve=True)
        if self.config_path.exists() and self.config_path.read_text() != text:
            n = 1
            while (self.path / f"config.prev-{n}.yaml").exists():
                n += 1
            os.replace(self.config_path, self.path / f"config.prev-{n}.yaml")
        if not self.config_path.exists():
            _atomic_write(self.config_path, text)
        self.identity(str(cfg.name))
        return self

    def identity(self, name: str) -> dict[str, Any]:
        """The run's identity, created once: a wandb id derived from the directory, so a resumed or
        requeued run continues the same wandb run."""
        path = self.path / "run.json"
        if path.exists():
            return json.loads(path.read_text())
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:8]
        identity = {"name": name, "wandb_id": f"{name[:40]}-{digest}".replace("/", "-"), "created": time.time()}
        _atomic_write(path, json.dumps(identity, indent=2) + "\n")
        return identity

    def load_config(self) -> DictConfig:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory: it has no config.yaml")
        cfg = OmegaConf.load(self.config_path)
        assert isinstance(cfg, DictConfig)
        return cfg


def _json_safe(value: Any) -> Any:
    """Non-finite floats are written as strings ("nan", "inf") so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d tensors and numpy scalars
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class MetricsFile:
    """Append-only ``metrics.jsonl``: one object per call, flushed at once so a killed run keeps it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": int(step), "time": round(time.time(), 3), **_json_safe(metrics)}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open() as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:  # a line cut by a kill mid-write
                    if line.endswith("\n"):
                        raise ValueError(f"{self.path}:{number}: not a JSON line: {error}") from error

    def truncate_after(self, step: int) -> int:
        """On resume from ``step``: drop records logged after it (the resumed run logs them again) and a last line
        torn by a kill, so that the resumed run appends onto whole lines. The file is replaced atomically
        (temporary file, then rename). Returns how many records were dropped."""
        if not self.path.exists():
            return 0
        text = self.path.read_text()
        records = list(self.read())
        kept = [r for r in records if isinstance(r.get("step", 0), int) and r.get("step", 0) <= step]
        torn = bool(text) and not text.endswith("\n")
        if len(kept) != len(records) or torn:
            _atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return len(records) - len(kept)
