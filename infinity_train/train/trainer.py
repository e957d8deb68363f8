"""One trainer for every stage (tokenizer, transformer) and every parallel strategy.

The run directory is the source of truth: the trainer writes the resolved config, metrics.jsonl,
checkpoints, per-rank logs, the consolidated export and, on completion, summary.json. A run started
again in the same directory resumes from its newest complete checkpoint and continues exactly: each
step's randomness is seeded from (seed, step, rank) and the data reader restores its position.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from infinity_train import exit_codes
from infinity_train.checkpoint import (
    Checkpointer,
    agree_on_resume,
    check_fingerprint,
    export_safetensors,
    read_meta,
    rng_state,
    set_rng_state,
    verify_checkpoint,
)
from infinity_train.config.schema import Precision, Task as TaskName, TrainConfig
from infinity_train.console import setup_logging
from infinity_train.distributed import World, all_reduce_sum, barrier, init_process_group, select_device
from infinity_train.parallel.units import TrainUnit, build_unit
from infinity_train.run_dir import MetricsFile, RunDirectory, _atomic_write, _json_safe
from infinity_train.lr_schedules import lr_multiplier
from infinity_train.throughput import peak_memory_gb, peak_tflops
from infinity_train.tracking import Tracker
from infinity_train.train.data import HeldOutSet, build_train_reader, endless, has_held_out, prepare_synthetic
from infinity_train.train.preemption import PreemptionFlag
from infinity_train.train.task import Task
from infinity_train.weights import is_weights_file

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with non-finite loss or gradients."""


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed (skipped ones included)
    images_seen: int = 0
    tokens_seen: int = 0
    train_flops: float = 0.0
    wall_time_s: float = 0.0
    skipped_steps: int = 0
    nonfinite_in_a_row: int = 0


def use_bf16(precision: Precision, device: torch.device) -> bool:
    return precision == Precision.bf16 or (precision == Precision.auto and device.type == "cuda")


def step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 65_537 + rank) % (2**63)


def build_task(cfg: TrainConfig, device: torch.device, bf16: bool) -> Task:
    if cfg.task == TaskName.tokenizer:
        from infinity_train.train.tokenizer_task import TokenizerTask

        return TokenizerTask(cfg, device, bf16)
    from infinity_train.train.transformer_task import TransformerTask

    return TransformerTask(cfg, device, bf16)


class Trainer:
    def __init__(self, cfg: TrainConfig, resolved: DictConfig, world: World) -> None:
        self.cfg, self.world = cfg, world
        self.device = select_device(cfg.device, world)
        init_process_group(world, self.device)
        self.bf16 = use_bf16(cfg.parallel.precision, self.device)
        self.run_dir = RunDirectory.for_config(resolved)
        self.state = TrainState()
        self.accum = cfg.optim.grad_accum_steps
        self.micro_batch = cfg.data.global_batch_size // (world.world_size * self.accum)

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (FSDP shards each rank's own copy)
        self.task = build_task(cfg, self.device, self.bf16)
        self.fingerprint = json.loads(json.dumps(self.task.fingerprint()))  # as it reads back from meta.json
        skipped: list[str] = []  # damaged checkpoints resume=auto stepped over, for the run's log
        self.resume_path = agree_on_resume(cfg.resume, self.run_dir.checkpoints_dir, world, skipped)
        initial_weights = None
        self._check_start_checkpoint()  # a refused restart must not touch the run directory
        if self.resume_path is None and cfg.init_from and is_weights_file(cfg.init_from):
            # weights only (a release checkpoint or an export): loaded into the plain model before it is sharded
            self.task.load_initial_weights(Path(cfg.init_from))
            initial_weights = cfg.init_from
        if world.is_main:
            self.run_dir.create(resolved)
        barrier()
        setup_logging(self.run_dir.logs_dir, world.rank)
        self.tracker = Tracker(self.run_dir, resolved, world.rank)
        for message in skipped:  # found before the log was set up (the run directory is made after the checks)
            log.warning("%s", message)
        if initial_weights:
            log.info("initial weights from %s", initial_weights)
        self.units: dict[str, TrainUnit] = {
            name: build_unit(name, module, cfg.optim, cfg.parallel, world, self.device, self.micro_batch, self.task.learning_rate(name), self.bf16)
            for name, module in self.task.trained_modules().items()
        }
        self.task.attach(self.units)

        if cfg.data.source.value == "synthetic":
            prepare_synthetic(cfg.data, world)
        self.reader = build_train_reader(cfg.data, world, self.micro_batch, cfg.seed)
        self.held_out = HeldOutSet(cfg.data, world, self.micro_batch, cfg.seed) if has_held_out(cfg.data) else None
        lg = cfg.logging
        self.checkpointer = Checkpointer(self.run_dir.checkpoints_dir, world, lg.keep_last, lg.keep_every, lg.checkpoint_steps, lg.async_checkpoint)
        self.samples = None
        if self.task.name == "transformer" and self.held_out is not None and lg.sample_prompts > 0:
            from infinity_train.train.sample_grids import SampleGrids

            self.samples = SampleGrids(
                self.task, self.held_out, lg.sample_prompts, cfg.data.resolution, self.run_dir.path / "samples", world, lg.sample_cfg, lg.sample_tau
            )
        self.peak_tflops = peak_tflops(self.device)
        self.last_validation: dict[str, float] = {}
        self._restore()

    # ------------------------------------------------------------------ resume

    def _start_checkpoint(self) -> tuple[Path | None, bool]:
        """(the checkpoint this run starts from, whether it is a branch (``init_from``) rather than a resume)."""
        if self.resume_path is not None:
            return self.resume_path, False
        if self.cfg.init_from and not is_weights_file(self.cfg.init_from):
            return Path(self.cfg.init_from), True
        return None, False

    def _check_start_checkpoint(self) -> None:
        """Check the checkpoint to start from (whole, safe to read, of this model) before anything is written. A resume
        path was verified already, by rank 0 in ``agree_on_resume``; a branch's ``init_from`` is verified here."""
        path, branch = self._start_checkpoint()
        if path is None:
            return
        meta = verify_checkpoint(path) if branch else read_meta(path)
        check_fingerprint(meta.get("fingerprint", {}), self.fingerprint, path)

    def _restore(self) -> None:
        path, fresh_branch = self._start_checkpoint()
        if path is None:
            if self.world.is_main:
                dropped = MetricsFile(self.run_dir.metrics_path).truncate_after(0)  # rows of a run killed before its first checkpoint
                if dropped:
                    log.info("dropped %d metrics records of an earlier start that left no checkpoint", dropped)
            log.info("starting %s from scratch in %s", self.task.name, self.run_dir.path)
            return
        meta, rank_state = self.checkpointer.load(path, list(self.units.values()), self.task.extra_state_modules(), self.fingerprint)
        saved = meta["state"]
        self.state = TrainState(**{k: saved[k] for k in asdict(TrainState()) if k in saved})
        if rank_state is not None:
            self.reader.load_state_dict(rank_state["reader"])
            set_rng_state(rank_state["rng"])
        else:
            self.reader.set_epoch(int(meta.get("epoch", 0)))
        if self.world.is_main:  # a branch killed before its first checkpoint starts over at the same step
            dropped = MetricsFile(self.run_dir.metrics_path).truncate_after(self.state.step)
            if dropped:
                log.info("dropped %d metrics records logged after step %d", dropped, self.state.step)
        log.info("%s from %s at step %d", "branching" if fresh_branch else "resumed", path, self.state.step)
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts is not None:
            log.info("Slurm restart count %s", restarts)
            self.tracker.log(self.state.step, {"slurm/restart_count": int(restarts)})

    # ------------------------------------------------------------------ the loop

    def fit(self) -> int:
        cfg, lg = self.cfg, self.cfg.logging
        total = cfg.schedule.total_steps
        preemption = PreemptionFlag()
        batches = endless(self.reader)
        sums: dict[str, torch.Tensor] = {}
        interval = _Interval()
        try:
            while self.state.step < total:
                started = time.perf_counter()
                raw = [next(batches) for _ in range(self.accum)]
                interval.data_wait += time.perf_counter() - started
                micros = [self.task.prepare(batch, training=True) for batch in raw]
                torch.manual_seed(step_seed(cfg.seed, self.state.step, self.world.rank))
                metrics, applied = self._train_step(micros)
                self._count(micros, interval)
                if applied:
                    self.state.nonfinite_in_a_row = 0
                    for key, value in metrics.items():
                        sums[key] = sums.get(key, 0) + value.detach().double().cpu()
                    interval.applied += 1
                else:
                    self.state.skipped_steps += 1
                    self.state.nonfinite_in_a_row += 1
                    log.warning("step %d: non-finite loss or gradients, update skipped (%d in a row)", self.state.step, self.state.nonfinite_in_a_row)
                self.state.step += 1
                interval.steps += 1
                interval.wall += time.perf_counter() - started
                step = self.state.step
                if self.state.nonfinite_in_a_row >= cfg.optim.max_nonfinite_steps:
                    self._log_train(sums, interval)  # the step that stopped the run is in metrics.jsonl too
                    raise NonFiniteError(
                        f"{self.state.nonfinite_in_a_row} steps in a row had non-finite loss or gradients (last at step {step}); "
                        "stopping with the last good checkpoint intact: lower optim.lr, check the data, or raise optim.max_nonfinite_steps"
                    )
                if step % lg.log_every == 0 or step == total:
                    self._log_train(sums, interval)
                    sums, interval = {}, _Interval()
                if self.held_out is not None and ((lg.val_every and step % lg.val_every == 0) or step == total):
                    self.validate()
                if self.samples is not None and ((lg.sample_every and step % lg.sample_every == 0) or step == total):
                    self.sample(final=step == total)
                stopping = preemption.any_rank_received(self.device)
                scheduled = step == total or (lg.checkpoint_every and step % lg.checkpoint_every == 0) or step in lg.checkpoint_steps
                if stopping or (scheduled and self.state.nonfinite_in_a_row == 0):  # no save inside a non-finite streak
                    self._check_weights_finite()  # a checkpoint is the last good one: never save non-finite weights
                    self.save()
                if stopping:
                    log.warning("checkpointed at step %d after a stop signal; exiting with status %d to be requeued", step, exit_codes.REQUEUE)
                    return exit_codes.REQUEUE
            self.checkpointer.finalize()
            self._finish()
            return exit_codes.OK
        finally:
            preemption.restore()
            self.checkpointer.finalize()
            self.tracker.finish()

    def _train_step(self, micros: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], bool]:
        metrics: dict[str, torch.Tensor] = {}
        applied = True
        step = self.state.step
        for name, unit in self.units.items():
            if not self.task.unit_active(name, step):
                continue
            unit.train()
            for index, micro in enumerate(micros):
                with unit.sync(index == len(micros) - 1):
                    loss, micro_metrics = self.task.loss(name, micro, step)
                    unit.backward(loss)
                for key, value in micro_metrics.items():
                    metrics[key] = metrics.get(key, 0) + value.detach() / len(micros)
            result = unit.step(self.task.learning_rate(name) * lr_multiplier(step, self.cfg.schedule))
            prefix = "optim" if name == "model" else f"optim/{name}"
            metrics[f"{prefix}/grad_norm"] = torch.tensor(result.grad_norm)
            applied = applied and result.applied
        return metrics, applied

    def _count(self, micros: list[dict[str, Any]], interval: "_Interval") -> None:
        work = torch.tensor([self.task.work(m) for m in micros], dtype=torch.float64).sum(0)
        work = all_reduce_sum(work.to(self.device)).cpu()
        images, tokens, flops = int(work[0]), int(work[1]), float(work[2])
        self.state.images_seen += images
        self.state.tokens_seen += tokens
        self.state.train_flops += flops
        interval.images += images
        interval.tokens += tokens
        interval.flops += flops

    def _check_weights_finite(self) -> None:
        """Every rank's (shard of the) trained weights finite, or NonFiniteError: an update with finite gradients
        can still overflow the weights (e.g. a huge learning rate), and that state must not become a checkpoint."""
        bad = torch.zeros(1, device=self.device)
        with torch.no_grad():
            for unit in self.units.values():
                for param in unit.model.parameters():  # type: ignore[attr-defined]
                    local = param.to_local() if hasattr(param, "to_local") else param
                    bad += (~torch.isfinite(local)).any().to(bad.device, bad.dtype)  # no host sync per tensor
        bad_total = int(all_reduce_sum(bad).item())
        if bad_total:
            raise NonFiniteError(
                f"the weights are non-finite after the update of step {self.state.step} ({bad_total} tensors); not checkpointed, "
                "the last good checkpoint is intact: lower optim.lr or check the data"
            )

    # ------------------------------------------------------------------ logging

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not values:
            return {}
        keys = sorted(values)
        flat = torch.cat([values[k].reshape(-1).double() for k in keys]).to(self.device)
        flat = (all_reduce_sum(flat) / self.world.world_size).cpu()
        out, offset = {}, 0
        for key in keys:
            n = values[key].numel()
            out[key] = flat[offset : offset + n].view(values[key].shape)
            offset += n
        return out

    def _log_train(self, sums: dict[str, torch.Tensor], interval: "_Interval") -> None:
        step, total = self.state.step, self.cfg.schedule.total_steps
        averaged = self._mean_over_ranks({k: v / max(interval.applied, 1) for k, v in sums.items()})
        record: dict[str, Any] = {}
        for key, value in averaged.items():
            name = key if "/" in key else f"train/{key}"
            if value.numel() == 1:
                record[name] = float(value)
            else:
                for k, v in enumerate(value.tolist()):
                    record[f"{name}/{k}"] = v
        if interval.applied == 0:
            record["train/loss"] = float("nan")
        timing = self._mean_over_ranks({"wall": torch.tensor(interval.wall), "wait": torch.tensor(interval.data_wait)})
        wall = max(float(timing["wall"]), 1e-9)
        per_device = interval.images / wall / self.world.world_size
        tflops = interval.flops / wall / self.world.world_size / 1e12
        self.state.wall_time_s += interval.wall
        record.update({
            "optim/lr": self.task.learning_rate("model") * lr_multiplier(step - 1, self.cfg.schedule),
            "optim/skipped_steps": self.state.skipped_steps,
            "throughput/images_per_s": interval.images / wall,
            "throughput/images_per_s_per_device": per_device,
            "throughput/tokens_per_s": interval.tokens / wall,
            "throughput/tokens_per_s_per_device": interval.tokens / wall / self.world.world_size,
            "throughput/tflops_per_s_per_device": tflops,
            "throughput/mfu": tflops / self.peak_tflops if self.peak_tflops else None,
            "time/step_s": wall / max(interval.steps, 1),
            "time/data_wait_fraction": float(timing["wait"]) / wall,
            "memory/peak_gb": peak_memory_gb(self.device),
            "progress/images_seen": self.state.images_seen,
            "progress/tokens_seen": self.state.tokens_seen,
            "progress/train_flops": self.state.train_flops,
            **{f"data/{k}": v for k, v in self.reader.stats().items()},
        })
        record = {k: v for k, v in record.items() if v is not None}
        self.tracker.log(step, record)
        log.info(
            "step %d/%d loss %.4f lr %.3g grad_norm %.3g %.1f img/s %s",
            step, total, record.get("train/loss", float("nan")), record["optim/lr"], record.get("optim/grad_norm", float("nan")),
            record["throughput/images_per_s"], f"mfu {record['throughput/mfu']:.1%}" if "throughput/mfu" in record else "",
        )

    # ------------------------------------------------------------------ validation, checkpoints, end

    def validate(self) -> dict[str, float]:
        assert self.held_out is not None
        for unit in self.units.values():
            unit.train(False)
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        torch.manual_seed(step_seed(self.cfg.seed, -1, self.world.rank))  # the same randomness at every validation
        for batch in self.held_out.batches(self.cfg.logging.val_batches):
            for key, value in self.task.validation_sums(self.task.prepare(batch, training=False)).items():
                sums[key] = sums[key] + value
        totals = self._sum_over_ranks(dict(sums)) if sums or self.world.is_distributed else {}
        if not totals or totals.get("images", 0) == 0:
            log.warning("held-out set gave no batches; no validation metrics at step %d", self.state.step)
            return {}
        metrics = self.task.validation_metrics(totals)
        self.tracker.log(self.state.step, metrics)
        log.info("step %d validation: %s", self.state.step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "scale" not in k))
        self.last_validation = metrics
        return metrics

    def sample(self, final: bool) -> None:
        assert self.samples is not None
        metrics = self.samples.make(self.state.step, final)
        if metrics:
            self.tracker.log(self.state.step, metrics)
            self.last_validation.update(metrics)
            log.info("step %d samples: checker score %.3f", self.state.step, metrics["val/checker_score"])

    def _sum_over_ranks(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sums over ranks; a rank with no held-out batch takes part with zeros."""
        keys = _broadcast_keys(sorted(sums), self.world)
        flat = torch.stack([sums.get(k, torch.zeros((), dtype=torch.float64)).double() for k in keys]).to(self.device)
        flat = all_reduce_sum(flat).cpu()
        return {k: float(v) for k, v in zip(keys, flat)}

    def save(self) -> None:
        meta = {
            "state": asdict(self.state),
            "epoch": self.reader.epoch,
            "fingerprint": self.fingerprint,
            "task": self.task.name,
            "strategy": self.cfg.parallel.strategy.value,
            "wandb_id": self.run_dir.identity(self.cfg.name)["wandb_id"],
        }
        rank_state = {"reader": self.reader.state_dict(), "rng": rng_state()}
        self.checkpointer.save(self.state.step, list(self.units.values()), self.task.extra_state_modules(), rank_state, meta)

    def _finish(self) -> None:
        name = "tokenizer.safetensors" if self.task.name == "tokenizer" else "model.safetensors"
        metadata = {"task": self.task.name, "step": self.state.step}
        for key in ("model_format", "text_pool_heads", "input_resampling"):  # what a transformer's shapes do not say
            if key in self.fingerprint:
                metadata[key] = self.fingerprint[key]
        export = export_safetensors(self.units["model"], self.run_dir.path / "export" / name, self.world, metadata)
        if not self.world.is_main:
            return
        summary = {
            "status": "complete",
            "task": self.task.name,
            "step": self.state.step,
            "images_seen": self.state.images_seen,
            "tokens_seen": self.state.tokens_seen,
            "train_flops": self.state.train_flops,
            "wall_time_s": self.state.wall_time_s,
            "skipped_steps": self.state.skipped_steps,
            "world_size": self.world.world_size,
            **self.task.summary(),
            "export": str(export),
            "final": self.last_validation,
        }
        _atomic_write(self.run_dir.path / "summary.json", json.dumps(_json_safe(summary), indent=2) + "\n")
        log.info("finished %d steps in %.1f s; summary in %s", self.state.step, self.state.wall_time_s, self.run_dir.path / "summary.json")


@dataclass
class _Interval:
    """Counters of the steps since the last training log record."""

    steps: int = 0
    applied: int = 0
    images: int = 0
    tokens: int = 0
    flops: float = 0.0
    wall: float = 0.0
    data_wait: float = 0.0


def _broadcast_keys(keys: list[str], world: World) -> list[str]:
    from infinity_train.distributed import broadcast_object

    if not world.is_distributed:
        return keys
    gathered = broadcast_object(keys)  # rank 0's keys; every rank evaluates the same kind of batches
    return list(gathered)  # type: ignore[arg-type]
