"""``infinity-launch sweep`` on the emulated cluster: Hydra multirun through the submitit Slurm launcher,
one job per point; a point preempted with SIGUSR1 (as ``--signal=USR1@<lead>`` delivers it: to the
processes of the step) is requeued, resumes, and ends exactly like its unpreempted twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.slurm_test_cluster.cluster import TestCluster
from slurm_helpers import ROOT, TIMINGS, losses_by_step, read_metrics, tiny_overrides, wait_for

STEPS = 120


def _array_task(cluster: TestCluster, index: int) -> str | None:
    listed = subprocess.run(["squeue", "--noheader", "--format=%i"], env=cluster.env, capture_output=True, text=True, timeout=30).stdout.split()
    return next((job for job in listed if job.endswith(f"_{index}")), None)


@pytest.mark.slow
def test_sweep_point_preempted_by_sigusr1_resumes_to_its_twins_result(slurm_cluster: TestCluster, synthetic_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    point = [o for o in tiny_overrides(synthetic_root, tmp_path / "unused", STEPS) if not o.startswith("run_dir=")]
    overrides = [*point, "cluster.nodes=1", "parallel=single", "task=tokenizer", "logging.checkpoint_every=50", "name=reference,preempted"]
    command = [sys.executable, "-m", "launch.cli", "sweep", "--sweep-dir", str(sweep_dir), "--", *overrides]
    started = time.monotonic()
    sweep = subprocess.Popen(command, cwd=ROOT, env=dict(slurm_cluster.env, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    preempted_dir, reference_dir = sweep_dir / "runs" / "1", sweep_dir / "runs" / "0"
    try:
        wait_for(lambda: sweep.poll() is not None or max(losses_by_step(preempted_dir), default=0) >= 3, 120, "the second sweep point to reach step 3")
        assert sweep.poll() is None, sweep.communicate()[0][-4000:]
        job = _array_task(slurm_cluster, 1)
        assert job is not None
        subprocess.run(["scancel", "--signal=USR1", job], env=slurm_cluster.env, check=True, timeout=30)
        out, _ = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            slurm_cluster.cancel_all_jobs()
            sweep.kill()
    TIMINGS.append(f"2-point sweep (submitit), one point preempted and requeued: {time.monotonic() - started:.1f} s")
    assert sweep.returncode == 0, out[-4000:]
    for run_dir in (reference_dir, preempted_dir):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["step"] == STEPS
    rank0 = (preempted_dir / "logs" / "rank0.log").read_text() if (preempted_dir / "logs" / "rank0.log").exists() else ""
    rank0 = rank0 or "\n".join(p.read_text() for p in (preempted_dir / "logs").glob("rank0*"))
    assert "after a stop signal" in rank0 and "resumed from" in rank0
    assert "after a stop signal" not in "\n".join(p.read_text() for p in (reference_dir / "logs").glob("rank0*")), "only that point is requeued"
    assert [int(r["step"]) for r in read_metrics(preempted_dir) if "train/loss" in r] == list(range(1, STEPS + 1))  # type: ignore[arg-type]
    assert losses_by_step(preempted_dir) == losses_by_step(reference_dir)
    assert os.path.isdir(sweep_dir / "code" / "launch")
