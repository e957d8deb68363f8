"""Helpers of the Slurm launcher tests: submit through ``python -m launch.cli slurm`` and read the
run directory. ``TIMINGS`` collects lines printed in the terminal summary."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from launch.slurm_test_cluster.cluster import TestCluster

ROOT = Path(__file__).resolve().parents[2]
TIMINGS: list[str] = []
JOB_TIMEOUT_S = 240.0


def tiny_overrides(data_root: Path, run_dir: Path, steps: int, batch: int = 2) -> list[str]:
    """Two CPU ranks over gloo on the emulated cluster: small data, no validation, no wandb."""
    return [
        "cluster=slurm_test",
        "parallel=ddp",
        "device=cpu",
        "data=synthetic64",
        f"data.root={data_root}",
        f"data.global_batch_size={batch}",
        "data.synthetic_train_samples=64",
        "data.synthetic_val_samples=0",
        "data.num_workers=0",
        "tokenizer=cpu_d8",
        "tokenizer.base_channels=8",
        f"schedule.total_steps={steps}",
        "schedule.warmup_steps=1",
        "logging.wandb=disabled",
        "logging.log_every=1",
        f"run_dir={run_dir}",
    ]


def launcher_env(cluster: TestCluster) -> dict[str, str]:
    return dict(cluster.env, PYTHONPATH=str(ROOT))


def slurm_launch_command(*options: str, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "launch.cli", "slurm", "--wait", *options, "--", *overrides]


def run_slurm_job(cluster: TestCluster, *options: str, overrides: list[str], timeout_s: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Submit through the launcher and wait for the job (requeues included); cancels it on timeout."""
    command = slurm_launch_command(*options, overrides=overrides)
    try:
        return subprocess.run(command, cwd=ROOT, env=launcher_env(cluster), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        cluster.cancel_all_jobs()
        raise


def job_logs(run_dir: Path) -> str:
    """Every Slurm log of the run (batch and per node), for assertion messages."""
    parts = []
    for path in sorted((run_dir / "logs").glob("slurm-*")):
        parts.append(f"==> {path.name}\n{path.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts) or f"(no Slurm logs in {run_dir / 'logs'})"


def read_metrics(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def losses_by_step(run_dir: Path) -> dict[int, float]:
    return {int(r["step"]): float(r["train/loss"]) for r in read_metrics(run_dir) if "train/loss" in r}  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def batch_job_id(run_dir: Path) -> str | None:
    """The job id, from the name of the batch log the job opens when it starts."""
    logs = sorted((run_dir / "logs").glob("slurm-*.out"))
    batch = [p for p in logs if ".node" not in p.name]
    return batch[0].name.removeprefix("slurm-").removesuffix(".out") if batch else None


def scancel(cluster: TestCluster, *args: str) -> None:
    subprocess.run(["scancel", *args], env=cluster.env, check=True, capture_output=True, text=True, timeout=30)

