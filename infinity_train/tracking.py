"""Experiment tracking: ``metrics.jsonl`` always, wandb when enabled, on rank 0 only.

wandb runs ``offline`` by default (sync later with ``wandb sync <run_dir>/wandb/offline-run-*``),
``online`` or ``disabled`` by ``logging.wandb``. The run id comes from the run directory, so a resumed
or requeued run appends to the same wandb run.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from infinity_train.run_dir import MetricsFile, RunDirectory

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, run_dir: RunDirectory, cfg: DictConfig, rank: int = 0):
        self.rank = rank
        self.metrics = MetricsFile(run_dir.metrics_path) if rank == 0 else None
        self._wandb: Any = None
        mode = cfg.logging.wandb
        mode = mode.value if isinstance(mode, Enum) else str(mode)
        if rank != 0 or mode == "disabled":
            return
        import wandb  # imported lazily: it is slow to import and rank > 0 never needs it

        identity = run_dir.identity(str(cfg.name))
        os.environ.setdefault("WANDB_SILENT", "true")
        self._wandb = wandb.init(
            project=cfg.logging.project,
            entity=cfg.logging.entity,
            name=str(cfg.name),
            id=identity["wandb_id"],
            resume="allow",
            dir=str(run_dir.path),
            mode=mode,
            config=OmegaConf.to_container(cfg, resolve=True),
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        log.info("wandb %s run %s in %s", mode, identity["wandb_id"], run_dir.path)

    @property
    def wandb_run(self) -> Any:
        return self._wandb

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.metrics is None:
            return
        self.metrics.write(step, metrics)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def finish(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
