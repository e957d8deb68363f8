"""Real sbatch jobs on the emulated two-node cluster, submitted through ``python -m launch.cli slurm``:
rendezvous across nodes, two-node training over gloo, and preemption -> checkpoint -> requeue -> resume."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch.slurm_test_cluster.cluster import TestCluster
from slurm_helpers import (
    ROOT,
    TIMINGS,
    batch_job_id,
    job_logs,
    launcher_env,
    losses_by_step,
    read_metrics,
    run_slurm_job,
    scancel,
    slurm_launch_command,
    tiny_overrides,
    wait_for,
)

TOKENIZER_STEPS = 4
TRANSFORMER_STEPS = 60
TRANSFORMER_BATCH = 8
CHECKPOINT_EVERY = 20
PREEMPT_AFTER_STEP = 3


@dataclass(frozen=True)
class JobRun:
    run_dir: Path
    result: subprocess.CompletedProcess[str]
    seconds: float

    def explain(self) -> str:
        return f"launcher exit {self.result.returncode}\n{self.result.stdout[-2000:]}\n{self.result.stderr[-3000:]}\n{job_logs(self.run_dir)}"


def _run(cluster: TestCluster, run_dir: Path, overrides: list[str], label: str) -> JobRun:
    started = time.monotonic()
    result = run_slurm_job(cluster, overrides=overrides)
    seconds = time.monotonic() - started
    TIMINGS.append(f"{label}: {seconds:.1f} s")
    return JobRun(run_dir, result, seconds)


def _transformer_overrides(synthetic_root: Path, run_dir: Path, tokenizer: Path) -> list[str]:
    return [
        *tiny_overrides(synthetic_root, run_dir, TRANSFORMER_STEPS, batch=TRANSFORMER_BATCH),
        "model=debug1",
        f"tokenizer.checkpoint={tokenizer}",
        f"logging.checkpoint_every={CHECKPOINT_EVERY}",
    ]


@pytest.fixture(scope="module")
def tokenizer_run(slurm_cluster: TestCluster, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    run_dir = tmp_path_factory.mktemp("slurm_tokenizer") / "run"
    overrides = [*tiny_overrides(synthetic_root, run_dir, TOKENIZER_STEPS), "task=tokenizer", "logging.checkpoint_every=2"]
    return _run(slurm_cluster, run_dir, overrides, "2-node tokenizer job")


@pytest.fixture(scope="module")
def reference_transformer_run(slurm_cluster: TestCluster, synthetic_root: Path, tokenizer_run: JobRun, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    run_dir = tmp_path_factory.mktemp("slurm_transformer") / "run"
    return _run(slurm_cluster, run_dir, _transformer_overrides(synthetic_root, run_dir, tokenizer_run.run_dir), "2-node transformer job")


def test_comm_check_spans_both_nodes_and_imports_the_snapshot(slurm_cluster: TestCluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = run_slurm_job(slurm_cluster, "--comm-check", overrides=["cluster=slurm_test", "parallel=ddp", "device=cpu", f"run_dir={run_dir}"])
    TIMINGS.append(f"2-node comm-check job: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr + job_logs(run_dir)
    check = json.loads((run_dir / "comm_check.json").read_text())
    assert check["ok"] and check["world_size"] == 2 and check["backend"] == "gloo"
    assert sorted(r["slurm_node"] for r in check["ranks"]) == ["n1", "n2"]
    assert {r["master"] for r in check["ranks"]} == {check["ranks"][0]["master"]}
    assert check["ranks"][0]["master"].startswith("127.0.0.1:"), "MASTER_ADDR must be the head node's NodeAddr"
    (submission,) = (run_dir / "slurm").iterdir()
    # submitted from the checkout, yet the job runs the snapshot
    assert check["imports"]["launch"] == str(submission / "code" / "launch")
    assert check["imports"]["infinity_train"] == str(submission / "code" / "infinity_train")
    assert {p.name for p in (run_dir / "logs").iterdir()} >= {f"slurm-{batch_job_id(run_dir)}.node0.out", f"slurm-{batch_job_id(run_dir)}.node1.out"}


def test_two_node_tokenizer_job_trains_over_gloo_and_writes_metrics(tokenizer_run: JobRun) -> None:
    assert tokenizer_run.result.returncode == 0, tokenizer_run.explain()
    summary = json.loads((tokenizer_run.run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == TOKENIZER_STEPS and summary["world_size"] == 2
    assert sorted(losses_by_step(tokenizer_run.run_dir)) == list(range(1, TOKENIZER_STEPS + 1))
    assert (tokenizer_run.run_dir / "export" / "tokenizer.safetensors").is_file()


def test_two_node_transformer_job_trains_the_debug_model(reference_transformer_run: JobRun) -> None:
    run = reference_transformer_run
    assert run.result.returncode == 0, run.explain()
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == TRANSFORMER_STEPS and summary["world_size"] == 2
    losses = losses_by_step(run.run_dir)
    assert sorted(losses) == list(range(1, TRANSFORMER_STEPS + 1))
    assert all(loss == loss and loss > 0 for loss in losses.values())
    config = (run.run_dir / "config.yaml").read_text()
    assert "world_size: 2" in config and "name: slurm_test" in config


@pytest.mark.slow
def test_sigusr1_checkpoints_requeues_and_resumes_to_the_unpreempted_result(
    slurm_cluster: TestCluster, synthetic_root: Path, tokenizer_run: JobRun, reference_transformer_run: JobRun, tmp_path: Path
) -> None:
    assert reference_transformer_run.result.returncode == 0, reference_transformer_run.explain()
    run_dir = tmp_path / "run"
    overrides = _transformer_overrides(synthetic_root, run_dir, tokenizer_run.run_dir)
    started = time.monotonic()
    launcher = subprocess.Popen(slurm_launch_command(overrides=overrides), cwd=ROOT, env=launcher_env(slurm_cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: max(losses_by_step(run_dir), default=0) >= PREEMPT_AFTER_STEP, 120, f"step {PREEMPT_AFTER_STEP} in metrics.jsonl")
        identity_before = (run_dir / "run.json").read_text()
        job_id = batch_job_id(run_dir)
        assert job_id is not None
        scancel(slurm_cluster, "--signal=USR1", "--batch", job_id)  # the batch script passes it on to the training step
        signalled_at_step = max(losses_by_step(run_dir))
        stdout, stderr = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            slurm_cluster.cancel_all_jobs()
            launcher.kill()
    TIMINGS.append(f"preempted + requeued 2-node transformer job: {time.monotonic() - started:.1f} s")
    logs = job_logs(run_dir)
    assert launcher.returncode == 0, f"{stdout}\n{stderr}\n{logs}"

    batch_log = (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    assert "SLURM_RESTART_COUNT=0" in batch_log and "SLURM_RESTART_COUNT=1" in batch_log, batch_log
    assert "SIGUSR1: passing it to the training step" in batch_log and "requeueing job" in batch_log, batch_log
    node_log = (run_dir / "logs" / f"slurm-{job_id}.node0.out").read_text()
    assert "SLURM_RESTART_COUNT=1" in node_log, node_log

    rank0 = "\n".join(p.read_text() for p in sorted((run_dir / "logs").glob("rank0*")))
    stopped = [line for line in rank0.splitlines() if "after a stop signal" in line]
    resumed = [line for line in rank0.splitlines() if "resumed from" in line]
    assert len(stopped) == 1 and len(resumed) == 1, rank0[-3000:]
    stop_step = int(stopped[0].split("checkpointed at step ")[1].split()[0])
    resume_step = int(resumed[0].rsplit("at step ", 1)[1].split()[0])
    assert stop_step == resume_step and signalled_at_step <= stop_step < TRANSFORMER_STEPS
    TIMINGS.append(f"preemption: signalled at step {signalled_at_step}, checkpointed and resumed at step {stop_step}")

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == TRANSFORMER_STEPS
    assert (run_dir / "run.json").read_text() == identity_before, "the requeued job must continue the same wandb run id"
    steps = [int(r["step"]) for r in read_metrics(run_dir) if "train/loss" in r]  # type: ignore[arg-type]
    assert steps == list(range(1, TRANSFORMER_STEPS + 1)), "each step logged exactly once across the requeue"
    reference = losses_by_step(reference_transformer_run.run_dir)
    preempted = losses_by_step(run_dir)
    worst = max(abs(preempted[s] - reference[s]) for s in reference)
    TIMINGS.append(f"max |loss difference| preempted vs unpreempted over {len(reference)} steps: {worst:.2e}")
    assert worst <= 1e-6, {s: (reference[s], preempted[s]) for s in reference if abs(preempted[s] - reference[s]) > 1e-6}
