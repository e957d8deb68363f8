"""``infinity-train train [overrides]`` / ``python -m infinity_train.train [overrides]``.

Rank and world size come from torchrun's or Slurm's environment; ``world_size`` is set from it.
Exit statuses are those of ``infinity_train.exit_codes``: 0 done, 2 bad config / missing input,
3 too many non-finite steps, 75 stopped by SIGUSR1 / SIGTERM after checkpointing (requeue).
"""

from __future__ import annotations

import logging
import os
import sys

from infinity_train import exit_codes
from infinity_train.checkpoint import CheckpointMismatch, CheckpointWriteError
from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.distributed import detect_world, destroy_process_group

log = logging.getLogger("infinity_train.train")


def with_world_size(overrides: list[str], world_size: int) -> list[str]:
    """The overrides with ``world_size`` set from the launcher; an explicit, different value is an error."""
    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+") == "world_size"]
    if given:
        value = given[-1].split("=", 1)[1]
        if value != str(world_size):
            raise ConfigError(f"world_size={value} was given but the launcher started {world_size} process(es)")
        return overrides
    return [*overrides, f"world_size={world_size}"]


def run_dir_problem(resolved) -> str | None:
    """Why the run directory cannot be written (a read-only or unwritable folder), or None: checked before any work."""
    from infinity_train.run_dir import RunDirectory

    path = RunDirectory.for_config(resolved).path
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"run_dir {path}: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"run_dir {path}: {existing} is not writable (permissions or a read-only file system)"
    for sub in ("logs", "checkpoints", "metrics.jsonl", "config.yaml"):
        target = path / sub
        if target.exists() and not os.access(target, os.W_OK):
            return f"run_dir {path}: {target} is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    world = detect_world()
    try:
        resolved = load_config(with_world_size(overrides, world.world_size))
        cfg = validate(to_typed(resolved))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    from infinity_train.config.schema import Strategy, Task, TokenizerKind

    if cfg.parallel.strategy == Strategy.deepspeed and world.launcher == "single":
        print(
            f"error: parallel=zero{cfg.parallel.zero_stage} (DeepSpeed) "
            "needs a launcher: run it under torchrun (torchrun --nproc-per-node=N -m infinity_train.train ...) or srun",
            file=sys.stderr,
        )
        return exit_codes.CONFIG_ERROR
    problem = run_dir_problem(resolved)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    from infinity_train.train.trainer import NonFiniteError, Trainer

    try:
        if cfg.task == Task.tokenizer and cfg.tokenizer.kind == TokenizerKind.pca:
            from infinity_train.train.pca_fit import fit_pca_run

            try:
                return fit_pca_run(cfg, resolved, world)
            except (FileNotFoundError, ValueError) as error:
                print(f"error: {error}", file=sys.stderr)
                return exit_codes.CONFIG_ERROR
        try:
            trainer = Trainer(cfg, resolved, world)
        except (CheckpointMismatch, FileNotFoundError, ConfigError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)  # a missing input or an impossible setting
            return exit_codes.CONFIG_ERROR
        except OSError as error:  # e.g. the run directory cannot be written
            print(f"error: {error.filename or ''}: {error.strerror or error}".lstrip(": "), file=sys.stderr)
            return exit_codes.CONFIG_ERROR
        return trainer.fit()
    except CheckpointWriteError as error:  # disk full or a vanished mount while saving
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    except NonFiniteError as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.NON_FINITE
    finally:
        destroy_process_group()
