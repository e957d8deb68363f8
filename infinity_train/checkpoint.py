"""Checkpoints: sharded ``torch.distributed.checkpoint`` saves (or DeepSpeed's own), written atomically,
pruned by a keep policy, found again by ``resume=auto``, and exported as one safetensors file.

Layout of ``<run_dir>/checkpoints/step_00000100/``::

    dcp/                 model and optimizer state of every trained unit (sharded; any world size loads it)
    deepspeed/           instead of dcp/ for DeepSpeed runs (DeepSpeed's format; same world size to resume)
    ranks/rank00000.pt   per-rank state: data-reader position, RNG states
    meta.json            step, samples / tokens / FLOPs seen, world size, model fingerprint, wandb id

A checkpoint is written under ``.step_00000100.partial`` and renamed once every rank has finished and
``meta.json`` is in place, so a checkpoint cut short by a kill is never loaded. ``meta.json`` is written last
and lists every file of the checkpoint with its size (``files``); a checkpoint counts as complete only when
that list checks out and its DCP index reads safely (``verify_checkpoint``). Old checkpoints are removed by
renaming them to a hidden ``.trash-*`` name first, so a kill during retention never leaves a half-deleted
directory that looks complete; a step saved again replaces the old directory by rename, never in place.
Nothing in a checkpoint is unpickled freely (``infinity_train.checkpoint_files``).
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn

from infinity_train.checkpoint_files import (
    CheckpointFileError,
    DamagedCheckpoint,
    UnsafeCheckpoint,
    check_dcp_directory,
    check_deepspeed_directory,
    load_rank_file,
    safe_dcp_load,
)
from infinity_train.distributed import World, barrier, broadcast_object
from infinity_train.parallel.units import DeepSpeedUnit, TrainUnit

log = logging.getLogger(__name__)

META_NAME = "meta.json"
FORMAT = "infinity-train-checkpoint"
VERSION = 2  # 2: meta.json lists every file with its size; 1 (no "version"): before that, still read
_NAME = re.compile(r"^step_(\d{8})$")
_TRASH_PREFIX = ".trash-"
_REQUIRED_META = {"step": int, "world_size": int, "state": dict}


CRASH_ENV = "INFINITY_TRAIN_CRASH_AT"
_crash_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Fault injection for ``benchmarks/crash_loop.py``: with ``INFINITY_TRAIN_CRASH_AT=<name>:<n>`` in the
    environment, the process SIGKILLs itself the n-th time it reaches this point (never set otherwise)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(count or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message is one line for the user."""


class CheckpointMismatch(ValueError):
    """A checkpoint that does not belong to this run's model."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def listed_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_*`` directory with a ``meta.json``, oldest first (not verified)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and (path / META_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint that verifies (``verify_checkpoint``), oldest first; damaged ones are left out."""
    found = []
    for step, path in listed_checkpoints(directory):
        try:
            verify_checkpoint(path)
        except DamagedCheckpoint:
            continue
        found.append((step, path))
    return found


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's ``meta.json``, checked for the keys a resume needs; one-line errors naming the file."""
    meta_path = path / META_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint: it does not exist")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {META_NAME}); it may have been cut short")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedCheckpoint(f"{meta_path}: damaged ({' '.join(str(error).split())})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{meta_path} is not an infinity-train checkpoint")
    version = meta.get("version", 1)
    if version not in (1, VERSION):
        raise DamagedCheckpoint(
            f"{meta_path}: written by another version of infinity-train (checkpoint version {version!r}; this one reads 1 and {VERSION})"
        )
    for key, kind in _REQUIRED_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            found = "missing" if key not in meta else f"{type(meta[key]).__name__} {meta[key]!r}"
            raise DamagedCheckpoint(f"{meta_path}: '{key}' must be {'an integer' if kind is int else 'an object'} ({found})")
    if meta["world_size"] < 1 or meta["step"] < 0:
        raise DamagedCheckpoint(f"{meta_path}: impossible step {meta['step']} / world_size {meta['world_size']}")
    if version >= 2 and not isinstance(meta.get("files"), dict):
        raise DamagedCheckpoint(f"{meta_path}: no file list ('files'); the checkpoint cannot be verified")
    return meta


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's meta after checking that it is whole: every listed file present at its listed size,
    the DCP index safe to read and every shard it names long enough, a state file for every rank.
    Raises ``DamagedCheckpoint`` / ``UnsafeCheckpoint`` (one line naming the file)."""
    meta = read_meta(path)
    files = meta.get("files")
    if isinstance(files, dict):
        for relative, size in sorted(files.items()):
            file = path / relative
            if ".." in Path(relative).parts or Path(relative).is_absolute():
                raise UnsafeCheckpoint(f"{path / META_NAME}: refused: it lists a file outside the checkpoint ({relative!r})")
            if not file.is_file():
                raise DamagedCheckpoint(f"{file}: missing (listed in {META_NAME}); the checkpoint is incomplete")
            found = file.stat().st_size
            if found != size:
                raise DamagedCheckpoint(f"{file}: {found} bytes, {META_NAME} says {size}; the file is truncated or was changed")
    if (path / "deepspeed").is_dir():
        pass  # DeepSpeed's files are checked (loaded weights-only) when the checkpoint is loaded
    elif (path / "dcp").exists() or not isinstance(files, dict) or any(k.startswith("dcp/") for k in files):
        check_dcp_directory(path / "dcp")
    else:
        raise DamagedCheckpoint(f"{path}: no dcp/ or deepspeed/ directory; the checkpoint is incomplete")
    for rank in range(meta["world_size"]):
        rank_file = path / "ranks" / f"rank{rank:05d}.pt"
        if not rank_file.is_file():
            raise DamagedCheckpoint(f"{rank_file}: missing; the checkpoint is incomplete")
    return meta


def resolve_resume(resume: str, checkpoints_dir: Path, skipped: list[str] | None = None) -> Path | None:
    """``auto``: the newest complete checkpoint, if any (damaged newer ones are skipped with a warning; an unsafe
    one stops the run); ``none``: start fresh; else that checkpoint, verified."""
    if resume == "none":
        return None
    if resume == "auto":
        for step, path in reversed(listed_checkpoints(checkpoints_dir)):
            try:
                verify_checkpoint(path)
            except DamagedCheckpoint as error:
                message = f"resume=auto skips damaged checkpoint {path.name}: {error}"
                if skipped is None:
                    log.warning("%s", message)
                else:
                    skipped.append(message)  # logged by the caller once its log is set up
                continue
            return path
        return None
    path = Path(resume)
    verify_checkpoint(path)  # a clear error for a missing, incomplete or damaged one
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
        if world.is_main and directory.is_dir():
            self._remove_leftovers()

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        units: Sequence[TrainUnit],
        extra_modules: Mapping[str, nn.Module],
        rank_state: Mapping[str, Any],
        meta: Mapping[str, Any],
    ) -> None:
        """Write checkpoint ``step`` (in the background with ``async_save``; ``finalize`` completes it). A failed
        write (disk full, a vanished mount) is a ``CheckpointWriteError``: one line, the partial save removed."""
        with self._write_errors(step):
            self.finalize()  # one save in flight at a time
            final = self.directory / checkpoint_name(step)
            partial = self.directory / f".{final.name}.partial"
            if self.world.is_main:
                if partial.exists():
                    _remove(partial)
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
            crash_point("checkpoint-write")
            torch.save(dict(rank_state), partial / "ranks" / f"rank{self.world.rank:05d}.pt")
            full_meta = {"format": FORMAT, "version": VERSION, "step": step, "world_size": self.world.world_size, "time": time.time(), **meta}
            self._pending = (future, partial, final, full_meta)
            if future is None:
                self.finalize()

    def finalize(self) -> None:
        """Complete the save in flight: wait for its writes, then (rank 0) meta.json, rename, prune."""
        step = self._pending[3]["step"] if self._pending is not None else None
        with self._write_errors(step):
            if self._pending is None:
                return
            future, partial, final, meta = self._pending
            self._pending = None
            if future is not None:
                future.result()
            barrier()
            if self.world.is_main:
                meta = {**meta, "files": _file_sizes(partial)}
                tmp = partial / f".{META_NAME}.tmp"
                tmp.write_text(json.dumps(meta, indent=2) + "\n")
                os.replace(tmp, partial / META_NAME)  # written last: the checkpoint is complete from here on
                crash_point("checkpoint-rename")
                if final.exists():  # a step saved again after a resume: move the old one aside, never delete it in place
                    old = self._trash_name(final)
                    os.replace(final, old)
                    crash_point("resave")
                    os.replace(partial, final)
                    _remove(old)
                else:
                    os.replace(partial, final)
                _fsync_directory(self.directory)
                self.prune()
                log.info("checkpoint step %d saved to %s", meta["step"], final)
            barrier()

    @contextmanager
    def _write_errors(self, step: int | None) -> Iterator[None]:
        try:
            yield
        except CheckpointWriteError:
            raise
        except (OSError, RuntimeError) as error:
            raise self._write_error(step, error) from None

    def _write_error(self, step: int | None, error: BaseException) -> "CheckpointWriteError":
        partial = self.directory / f".{checkpoint_name(step)}.partial" if step is not None else None
        if self.world.is_main and partial is not None and partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
        self._pending = None
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        try:
            free = f"{shutil.disk_usage(self.directory).free / 1e9:.2f} GB free there"
        except OSError:
            free = "its free space cannot be read"
        name = checkpoint_name(step) if step is not None else "a checkpoint"
        return CheckpointWriteError(
            f"{self.directory}: writing {name} failed ({reason}); {free}. The newest complete checkpoint is untouched: "
            "free space (or fix the mount) and restart with resume=auto"
        )

    def prune(self) -> None:
        """Remove checkpoints outside the keep policy: each is first renamed to a hidden trash name (atomic, so it
        stops looking complete at once), then deleted."""
        found = listed_checkpoints(self.directory)
        newest = {step for step, _ in found[-self.keep_last :]}
        for step, path in found:
            permanent = step in self.keep_steps or (self.keep_every > 0 and step % self.keep_every == 0)
            if step not in newest and not permanent:
                trash = self._trash_name(path)
                os.replace(path, trash)
                crash_point("retention")
                _remove(trash)
        self._remove_leftovers(partials=False)

    def _trash_name(self, path: Path) -> Path:
        return path.with_name(f"{_TRASH_PREFIX}{path.name}-{os.getpid()}-{time.monotonic_ns()}")

    def _remove_leftovers(self, partials: bool = True) -> None:
        """Trash left by a kill during retention and (at start-up) partial saves of a killed run."""
        for path in self.directory.iterdir():
            if path.name.startswith(_TRASH_PREFIX) or (partials and path.name.startswith(".step_") and path.name.endswith(".partial")):
                _remove(path)

    # ------------------------------------------------------------------ load

    def load(
        self, path: Path, units: Sequence[TrainUnit], extra_modules: Mapping[str, nn.Module], fingerprint: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Load units (and extra modules) from ``path``; returns (meta, this rank's state or None when the
        checkpoint was written at another world size)."""
        meta = verify_checkpoint(path)
        check_fingerprint(meta.get("fingerprint", {}), fingerprint, path)
        same_world = meta["world_size"] == self.world.world_size
        if any(isinstance(u, DeepSpeedUnit) for u in units):
            if not same_world:
                raise CheckpointMismatch(
                    f"{path} is a DeepSpeed checkpoint of world size {meta['world_size']}; resume it with the same world size "
                    f"(this run has {self.world.world_size})"
                )
            check_deepspeed_directory(path / "deepspeed")  # DeepSpeed unpickles its files freely: check them first
            for unit in units:
                unit.load(path)  # type: ignore[attr-defined]
        else:
            state = self._state(units, extra_modules)
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            safe_dcp_load(state, path / "dcp", no_dist=not dist.is_initialized())
            for unit in units:
                unit.load_state_dict(state[unit.name])  # type: ignore[attr-defined]
            for name, module in extra_modules.items():
                module.load_state_dict(state[f"extra.{name}"])
        rank_state = None
        if same_world:
            rank_state = load_rank_file(path / "ranks" / f"rank{self.world.rank:05d}.pt")
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
        crash_point("export")
        os.replace(tmp, path)
        meta_tmp = path.parent / ".meta.json.tmp"
        meta_tmp.write_text(json.dumps(dict(metadata), indent=2) + "\n")
        os.replace(meta_tmp, path.parent / "meta.json")
    barrier()
    return path if world.is_main else None


def agree_on_resume(resume: str, checkpoints_dir: Path, world: World, skipped: list[str] | None = None) -> Path | None:
    """Rank 0 picks the checkpoint to resume (ranks may see a shared file system at slightly
    different moments) and every rank uses that one; a refused one stops every rank with rank 0's line."""
    answer: tuple[str, str | None] = ("ok", None)
    if world.is_main:
        try:
            chosen = resolve_resume(resume, checkpoints_dir, skipped)
            answer = ("ok", str(chosen) if chosen is not None else None)
        except (CheckpointFileError, FileNotFoundError) as error:
            answer = ("unsafe" if isinstance(error, UnsafeCheckpoint) else "missing" if isinstance(error, FileNotFoundError) else "damaged", str(error))
    kind, text = broadcast_object(answer)  # type: ignore[misc]  # every rank stops with rank 0's one line
    if kind == "unsafe":
        raise UnsafeCheckpoint(text)
    if kind == "damaged":
        raise DamagedCheckpoint(text)
    if kind == "missing":
        raise FileNotFoundError(text)
    return Path(text) if text else None


def _file_sizes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
