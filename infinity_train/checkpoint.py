"""Checkpoints: sharded ``torch.distributed.checkpoint`` saves (or DeepSpeed's own), written atomically,
pruned by a keep policy, found again by ``resume=auto``, and exported as one safetensors file.

Layout of ``<run_dir>/checkpoints/step_00000100/``::

    dcp/                 model and optimizer state of every trained unit (sharded; any world size loads it)
    deepspeed/           instead of dcp/ for DeepSpeed runs (DeepSpeed's format; same world size to resume)
    ranks/rank00000.pt   per-rank state: data-reader position, RNG states
    meta.json            step, samples / tokens / FLOPs seen, world size, model fingerprint, wandb id

A checkpoint is written under ``.step_00000100.partial`` and renamed once every rank has finished and
``meta.json`` is in place, so a checkpoint cut short by a kill is never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn

from infinity_train.distributed import World, barrier, broadcast_object
from infinity_train.parallel.units import DeepSpeedUnit, TrainUnit

log = logging.getLogger(__name__)

META_NAME = "meta.json"
FORMAT = "infinity-train-checkpoint"
_NAME = re.compile(r"^step_(\d{8})$")


class CheckpointMismatch(ValueError):
    """A checkpoint that does not belong to this run's model."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and (path / META_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {META_NAME}); it may have been cut short")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not an infinity-train checkpoint")
    return meta


def resolve_resume(resume: str, checkpoints_dir: Path) -> Path | None:
    """``auto``: the newest complete checkpoint, if any; ``none``: start fresh; else that checkpoint."""
    if resume == "none":
        return None
    if resume == "auto":
        found = complete_checkpoints(checkpoints_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    read_meta(path)  # a clear error for a missing or incomplete one
    return path


def check_fingerprint(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    if "model_format" in current and saved.get("model_format") != current["model_format"]:
        raise CheckpointMismatch(
            f"checkpoint {path} holds a transformer of format {saved.get('model_format', 1)}, written before the model "
            f"matched the Infinity release (format {current['model_format']}: RoPE positions, text-pool heads, "
            "unconditional text length, next-scale input resampling); it cannot be resumed or branched: start a new run"
        )
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in changed)
        raise CheckpointMismatch(f"checkpoint {path} was saved by another model configuration ({detail})")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np.random.get_state()[0], np.random.get_state()[1].tolist(), *np.random.get_state()[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpointer:
    def __init__(
        self,
        directory: Path,
        world: World,
        keep_last: int,
        keep_every: int = 0,
        keep_steps: Sequence[int] = (),
        async_save: bool = False,
    ) -> None:
        self.directory, self.world = directory, world
        self.keep_last, self.keep_every, self.keep_steps = keep_last, keep_every, set(keep_steps)
        self.async_save = async_save
        self._pending: tuple[Any, Path, Path, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        units: Sequence[TrainUnit],
        extra_modules: Mapping[str, nn.Module],
        rank_state: Mapping[str, Any],
        meta: Mapping[str, Any],
    ) -> None:
        self.finalize()  # one save in flight at a time
        final = self.directory / checkpoint_name(step)
        partial = self.directory / f".{final.name}.partial"
        if self.world.is_main:
            if final.exists():  # a step saved again after a resume: replace it
                shutil.rmtree(final)
            if partial.exists():
                shutil.rmtree(partial)
            (partial / "ranks").mkdir(parents=True)
        barrier()
        future = None
        if any(isinstance(u, DeepSpeedUnit) for u in units):
            for unit in units:
                unit.save(partial)  # type: ignore[attr-defined]
        else:
            state = self._state(units, extra_modules)
            single = not dist.is_initialized()
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            if self.async_save:
                future = dcp.async_save(state, checkpoint_id=str(partial / "dcp"), no_dist=single)
            else:
                dcp.save(state, checkpoint_id=str(partial / "dcp"), no_dist=single)
        torch.save(dict(rank_state), partial / "ranks" / f"rank{self.world.rank:05d}.pt")
        full_meta = {"format": FORMAT, "step": step, "world_size": self.world.world_size, "time": time.time(), **meta}
        self._pending = (future, partial, final, full_meta)
        if future is None:
            self.finalize()

    def finalize(self) -> None:
        """Complete the save in flight: wait for its writes, then (rank 0) meta.json, rename, prune."""
        if self._pending is None:
            return
        future, partial, final, meta = self._pending
        self._pending = None
        if future is not None:
            future.result()
        barrier()
        if self.world.is_main:
            (partial / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            os.replace(partial, final)
            _fsync_directory(self.directory)
            self.prune()
            log.info("checkpoint step %d saved to %s", meta["step"], final)
        barrier()

    def prune(self) -> None:
        found = complete_checkpoints(self.directory)
        newest = {step for step, _ in found[-self.keep_last :]}
        for step, path in found:
            permanent = step in self.keep_steps or (self.keep_every > 0 and step % self.keep_every == 0)
            if step not in newest and not permanent:
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ load

    def load(
        self, path: Path, units: Sequence[TrainUnit], extra_modules: Mapping[str, nn.Module], fingerprint: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Load units (and extra modules) from ``path``; returns (meta, this rank's state or None when the
        checkpoint was written at another world size)."""
        meta = read_meta(path)
        check_fingerprint(meta.get("fingerprint", {}), fingerprint, path)
        same_world = meta["world_size"] == self.world.world_size
        if any(isinstance(u, DeepSpeedUnit) for u in units):
            if not same_world:
                raise CheckpointMismatch(
                    f"{path} is a DeepSpeed checkpoint of world size {meta['world_size']}; resume it with the same world size "
                    f"(this run has {self.world.world_size})"
                )
            for unit in units:
                unit.load(path)  # type: ignore[attr-defined]
        else:
            state = self._state(units, extra_modules)
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            dcp.load(state, checkpoint_id=str(path / "dcp"), no_dist=not dist.is_initialized())
            for unit in units:
                unit.load_state_dict(state[unit.name])  # type: ignore[attr-defined]
            for name, module in extra_modules.items():
                module.load_state_dict(state[f"extra.{name}"])
        rank_state = None
        if same_world:
            rank_state = torch.load(path / "ranks" / f"rank{self.world.rank:05d}.pt", weights_only=True)
        else:
            log.warning(
                "checkpoint %s was written by %d processes, this run has %d: model and optimizer are restored, "
                "the data order restarts at the saved epoch",
                path, meta["world_size"], self.world.world_size,
            )
        return meta, rank_state

    @staticmethod
    def _state(units: Sequence[TrainUnit], extra_modules: Mapping[str, nn.Module]) -> dict[str, Any]:
        state: dict[str, Any] = {unit.name: unit.state_dict() for unit in units}  # type: ignore[attr-defined]
        for name, module in extra_modules.items():
            state[f"extra.{name}"] = module.state_dict()
        return state


def export_safetensors(unit: TrainUnit, path: Path, world: World, metadata: Mapping[str, Any]) -> Path | None:
    """Write the unit's whole model as one fp32 safetensors file (rank 0), e.g. for sampling."""
    from safetensors.torch import save_file

    state = unit.full_model_state()  # type: ignore[attr-defined]  # collective: every rank calls it
    if world.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous() for k, v in state.items()}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
        os.replace(tmp, path)
        (path.parent / "meta.json").write_text(json.dumps(dict(metadata), indent=2) + "\n")
    barrier()
    return path if world.is_main else None


def agree_on_resume(resume: str, checkpoints_dir: Path, world: World) -> Path | None:
    """Rank 0 picks the checkpoint to resume (ranks may see a shared file system at slightly
    different moments) and every rank uses that one."""
    chosen = resolve_resume(resume, checkpoints_dir) if world.is_main else None
    text = broadcast_object(str(chosen) if chosen is not None else None)
    return Path(text) if text else None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
