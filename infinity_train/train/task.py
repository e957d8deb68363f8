"""What a training stage is to the trainer: its trained modules, how a batch becomes a loss, how
validation is summed, and how much work a batch is. The trainer owns everything else."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from infinity_train.parallel.units import TrainUnit

Metrics = dict[str, torch.Tensor]


class Task:
    """Base class of ``TransformerTask`` and ``TokenizerTask``."""

    def __init__(self, device: torch.device, bf16: bool) -> None:
        self.device, self.bf16 = device, bf16
        self.units: dict[str, TrainUnit] = {}

    # ---- modules

    def trained_modules(self) -> dict[str, nn.Module]:
        """Modules to optimize, in update order, before any wrapping."""
        raise NotImplementedError

    def extra_state_modules(self) -> dict[str, nn.Module]:
        """Modules with state that must be checkpointed but are not optimized."""
        return {}

    def learning_rate(self, unit: str) -> float:
        raise NotImplementedError

    def attach(self, units: Mapping[str, TrainUnit]) -> None:
        self.units = dict(units)

    def fingerprint(self) -> dict[str, Any]:
        """Architecture facts a checkpoint must share with this run to be loaded."""
        raise NotImplementedError

    def load_initial_weights(self, path: Path) -> None:
        """Start from a weights file (``init_from=``) instead of a training checkpoint."""
        raise ValueError(f"init_from={path}: a weights file can start a transformer run only; pass a checkpoint directory")

    def summary(self) -> dict[str, Any]:
        """Size facts for the run's summary.json."""
        raise NotImplementedError

    # ---- steps

    def prepare(self, batch: dict[str, Any], training: bool) -> dict[str, Any]:
        """A reader batch on the device, with the frozen encoders applied."""
        raise NotImplementedError

    def unit_active(self, unit: str, step: int) -> bool:
        return True

    def loss(self, unit: str, micro: dict[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError

    def work(self, micro: dict[str, Any]) -> tuple[int, int, float]:
        """(images, tokens, training FLOPs) of a prepared micro-batch (FLOPs 0 when not counted)."""
        raise NotImplementedError

    # ---- validation

    def validation_sums(self, micro: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Additive sums over a held-out micro-batch (float64 scalars)."""
        raise NotImplementedError

    def validation_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        raise NotImplementedError

    # ---- helpers

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
