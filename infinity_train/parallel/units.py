"""A trained unit: one model with its optimizer behind one interface, whatever runs it (a single
process, DDP, FSDP2 / HSDP, or a DeepSpeed ZeRO engine). The trainer only talks to this interface.

Micro-batches: call ``backward`` once per micro-batch (with ``sync`` true on the last one), then
``step`` once. Losses are given unscaled; the unit divides by the number of micro-batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from infinity_train.config.schema import OptimConfig, ParallelConfig, Strategy
from infinity_train.distributed import World
from infinity_train.optim import build_adamw, parameter_groups, use_fused
from infinity_train.parallel.parallelize import parallelize

log = logging.getLogger(__name__)

WRAPPER_PREFIXES = ("_checkpoint_wrapped_module", "_orig_mod")


@dataclass
class StepResult:
    grad_norm: float  # before clipping; non-finite when the step was skipped
    applied: bool  # False when non-finite gradients made the unit skip the update


class TrainUnit:
    """Interface; see ``TorchUnit`` and ``DeepSpeedUnit``."""

    name: str
    model: nn.Module  # the plain module (parameters may be sharded DTensors)
    module: nn.Module  # what the forward pass calls (a wrapper where the strategy needs one)
    accum_steps: int

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self, lr: float) -> StepResult: ...
    def zero_grad(self) -> None: ...
    def train(self, mode: bool = True) -> None:
        self.module.train(mode)


class TorchUnit(TrainUnit):
    def __init__(self, name: str, model: nn.Module, optim: OptimConfig, parallel: ParallelConfig, world: World, device: torch.device, lr: float, bf16: bool) -> None:
        self.name, self.model, self.accum_steps = name, model, optim.grad_accum_steps
        self.strategy = parallel.strategy
        self.grad_clip = optim.grad_clip
        self.module = parallelize(model, parallel, world, device, bf16)
        self.optimizer = build_adamw(model, optim, lr, device)
        self._foreach = not use_fused(optim, device)

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        if self.strategy == Strategy.ddp and not enabled:
            return self.module.no_sync()
        if self.strategy in (Strategy.fsdp, Strategy.hsdp):
            self.model.set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accum_steps).backward()

    def parameters(self) -> Iterator[torch.Tensor]:
        return (p for p in self.model.parameters() if p.requires_grad)

    def step(self, lr: float) -> StepResult:
        params = list(self.parameters())
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else math.inf, foreach=self._foreach)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP: the global norm
            norm = norm.full_tensor()
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):
            self.zero_grad()
            return StepResult(grad_norm, applied=False)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.zero_grad()
        return StepResult(grad_norm, applied=True)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    # ---- checkpoint state (torch.distributed.checkpoint handles sharded and replicated alike)

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, self.optimizer)
        return {"model": model_state, "optim": optim_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])

    def full_model_state(self) -> dict[str, torch.Tensor]:
        """The whole, unsharded model state on CPU (every rank takes part; rank 0 writes it)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def deepspeed_config(optim: OptimConfig, parallel: ParallelConfig, micro_batch: int, lr: float, bf16: bool) -> dict[str, Any]:
    """DeepSpeed's JSON config, generated from the run config (never written by hand)."""
    zero: dict[str, Any] = {"stage": parallel.zero_stage}
    if parallel.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        # offloaded states are updated on the CPU by DeepSpeed's own (compiled) Adam
        config_optimizer = {"type": "AdamW", "params": {"lr": lr, "betas": list(optim.betas), "eps": optim.eps, "weight_decay": optim.weight_decay}}
    if parallel.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": optim.grad_accum_steps,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if parallel.offload_optimizer:
        config["optimizer"] = config_optimizer
    if bf16:
        config["bf16"] = {"enabled": True, "check_grad_overflow": True}
    return config


class DeepSpeedUnit(TrainUnit):
    """A DeepSpeed ZeRO engine. DeepSpeed scales losses for accumulation and steps only at the
    accumulation boundary; a non-finite gradient norm makes it skip the update (``applied`` false)."""

    def __init__(
        self, name: str, model: nn.Module, optim: OptimConfig, parallel: ParallelConfig, world: World, device: torch.device, micro_batch: int, lr: float, bf16: bool
    ) -> None:
        import deepspeed

        self.name, self.model, self.accum_steps = name, model, optim.grad_accum_steps
        parallelize(model, parallel, world, device, bf16)  # checkpointing and compile; ZeRO shards
        config = deepspeed_config(optim, parallel, micro_batch, lr, bf16)
        # without offload, ZeRO wraps the same torch AdamW the other strategies use (no compiled op)
        optimizer = None if parallel.offload_optimizer else build_adamw(model, optim, lr, device)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, model_parameters=parameter_groups(model, optim.weight_decay) if optimizer is None else None, config=config
        )
        self.module = self.engine

    def sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # counts the micro-step; no update

    def step(self, lr: float) -> StepResult:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else float("nan")
        return StepResult(grad_norm, applied=bool(self.engine.was_step_applied()))

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed", load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}/deepspeed")

    def full_model_state(self) -> dict[str, torch.Tensor]:
        import deepspeed

        gathered = self.engine.zero_optimization_stage() == 3
        with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None, enabled=gathered):
            return {_plain_key(k): v.detach().cpu().clone() for k, v in self.model.state_dict().items()}


def _plain_key(key: str) -> str:
    """The model's own parameter name, without the wrappers checkpointing and compile insert."""
    return ".".join(part for part in key.split(".") if part not in WRAPPER_PREFIXES)


def build_unit(
    name: str, model: nn.Module, optim: OptimConfig, parallel: ParallelConfig, world: World, device: torch.device, micro_batch: int, lr: float, bf16: bool
) -> TrainUnit:
    model.to(device)
    if parallel.strategy == Strategy.deepspeed:
        return DeepSpeedUnit(name, model, optim, parallel, world, device, micro_batch, lr, bf16)
    return TorchUnit(name, model, optim, parallel, world, device, lr, bf16)
