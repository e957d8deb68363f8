"""The Hydra application behind ``infinity-launch sweep``.

    python -m launch.sweep_app --multirun hydra/launcher=<a submitit_slurm option> [sweep overrides]

Hydra's submitit launcher submits one Slurm job per sweep point; each task of a job (one per node)
runs ``run_point``, which takes the same path as the sbatch script of ``infinity-launch slurm``:
torchrun through ``launch.node`` on a c10d rendezvous at the head node's ``NodeAddr``; SIGUSR1 is
passed on to the workers, and when they checkpoint and exit with the requeue status the job is
requeued with ``scontrol requeue`` and resumes in the same run directory (``<sweep dir>/<job num>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from infinity_train import exit_codes
from infinity_train.config import conf_dir
from infinity_train.config.compose import register_schema
from launch.gpu_check import gpu_problem
from launch.node import forward_usr1_to_workers, run_torchrun
from launch.plan import LAUNCHER_KEYS, hydra_quote, override_key
from launch.slurm_step import step_torchrun_args
from launch.torchrun_args import trainer_program

register_schema()


def point_overrides(task_overrides: list[str], run_dir: Path, world_size: int, restart_count: int) -> list[str]:
    """The trainer's overrides of one sweep point, with the launcher's run_dir and world_size; a
    requeued attempt resumes from the newest checkpoint whatever resume= the first one had."""
    kept = [o for o in task_overrides if override_key(o) not in LAUNCHER_KEYS]
    restart = ["resume=auto"] if restart_count > 0 else []
    return [*kept, f"run_dir={hydra_quote(str(run_dir))}", f"world_size={world_size}", *restart]


def requeue_target(env: Mapping[str, str]) -> str:
    """This job for ``scontrol requeue``: an array task by ``<array id>_<index>``, since the task that
    carries the array's own id would otherwise requeue the whole array."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def _requeue_and_wait(env: Mapping[str, str]) -> None:
    if env.get("SLURM_NODEID", "0") == "0":
        target = requeue_target(env)
        print(f"[launch.sweep_app] checkpointed after a preemption signal: requeueing job {target}", file=sys.stderr, flush=True)
        subprocess.run(["scontrol", "requeue", target], check=True, timeout=60)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # torchrun's handler would turn it into a submitit "result"
    time.sleep(3600)  # Slurm stops this job to requeue it


def _run_node(args: list[str]) -> int:
    """``run_torchrun``; a SIGTERM (Slurm stopping or requeueing the job) ends this process without a
    submitit result, so a requeued job reports the outcome of its last attempt."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        return run_torchrun(args)
    except SignalException as stop:
        print(f"[launch.sweep_app] {signal.Signals(stop.sigval).name}: the job is being stopped", file=sys.stderr, flush=True)
        raise SystemExit(128 + int(stop.sigval)) from None


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def run_point(cfg: DictConfig) -> str:
    if "SLURM_JOB_ID" not in os.environ:
        raise RuntimeError("launch.sweep_app runs inside Slurm jobs: use infinity-launch sweep (hydra/launcher=submitit_slurm)")
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.sweep.dir).resolve() / str(hydra_cfg.sweep.subdir)
    cluster = cfg.cluster
    nproc = max(int(cluster.gpus_per_node), 1)
    problem = gpu_problem(int(cluster.gpus_per_node))
    if problem:
        raise RuntimeError(problem)
    restart_count = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    overrides = point_overrides(list(hydra_cfg.overrides.task), run_dir, int(cluster.nodes) * nproc, restart_count)
    args = step_torchrun_args(nproc, trainer_program(overrides), run_dir / "slurm")
    print(f"[launch.sweep_app] SLURM_RESTART_COUNT={restart_count} torchrun {' '.join(args)}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGUSR1, forward_usr1_to_workers)  # instead of submitit's immediate requeue
    status = _run_node(args)
    if status == exit_codes.REQUEUE and cluster.requeue:
        _requeue_and_wait(os.environ)
    if status != exit_codes.OK:
        raise RuntimeError(f"training exited with status {status}; logs in {run_dir / 'logs'}")
    return str(run_dir)


if __name__ == "__main__":
    run_point()
