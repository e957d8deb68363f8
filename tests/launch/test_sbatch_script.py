"""The rendered sbatch script: directives from the cluster config, srun -> launch.node -> torchrun on a
c10d rendezvous at the head node, env file sourced, requeue on the trainer's 75."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

from infinity_train.config.schema import ClusterConfig, ClusterKind
from launch.sbatch_script import BatchJob, render_sbatch, sbatch_directives

GPU_CLUSTER = ClusterConfig(
    name="big",
    kind=ClusterKind.slurm,
    nodes=4,
    gpus_per_node=8,
    cpus_per_task=64,
    mem="480G",
    time="12:00:00",
    partition="gpu",
    account="proj42",
    qos="high",
    constraint="h100",
    extra_directives=["--exclusive", "#SBATCH --comment=scaling"],
    env_file="x.env",
    signal_lead_s=300,
    requeue=True,
)
PROGRAM = ["-m", "infinity_train.train", "model=layer12", "name=a b", "data.train_shards='/d/{000..009}.tar'", "run_dir=/runs/x", "world_size=32"]


def _job(cluster: ClusterConfig = GPU_CLUSTER, env_file: Path | None = Path("/runs/x/slurm/s/cluster.env")) -> BatchJob:
    return BatchJob(
        name="big-run",
        cluster=cluster,
        run_dir=Path("/runs/x"),
        code_dir=Path("/runs/x/slurm/s/code"),
        workdir=Path("/home/me/project"),
        python="/venv/bin/python",
        nproc_per_node=max(cluster.gpus_per_node, 1),
        program=PROGRAM,
        env_file=env_file,
    )


def test_directives_follow_the_cluster_config() -> None:
    lines = sbatch_directives(_job())
    for expected in (
        "--job-name=big-run", "--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=64", "--gpus-per-node=8", "--mem=480G",
        "--time=12:00:00", "--partition=gpu", "--account=proj42", "--qos=high", "--constraint=h100", "--signal=USR1@300",
        "--requeue", "--open-mode=append", "--output=/runs/x/logs/slurm-%j.out", "--exclusive", "--comment=scaling",
    ):
        assert f"#SBATCH {expected}" in lines


def test_cpu_cluster_without_requeue_or_signal_omits_them() -> None:
    cpu = replace(GPU_CLUSTER, gpus_per_node=0, mem=None, partition=None, account=None, qos=None, constraint=None, extra_directives=[], signal_lead_s=0, requeue=False)
    lines = sbatch_directives(_job(cpu))
    assert not any(line.startswith(("#SBATCH --gpus", "#SBATCH --mem", "#SBATCH --partition", "#SBATCH --signal")) for line in lines)
    assert "#SBATCH --no-requeue" in lines and "#SBATCH --requeue" not in lines
    assert "REQUEUE_ON_PREEMPTION=0" in render_sbatch(_job(cpu))


def test_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n"], input=render_sbatch(_job()), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_one_srun_task_per_node_runs_torchrun_against_the_head_node() -> None:
    script = render_sbatch(_job())
    assert 'srun --nodes="$SLURM_NNODES" --ntasks-per-node=1' in script
    assert '"$PYTHON" -m launch.node --expect-gpus 8 --slurm-rendezvous --' in script
    assert '--nnodes="$SLURM_NNODES" --nproc-per-node=8' in script
    assert '--rdzv-backend=c10d --rdzv-endpoint="${head_addr}:${rdzv_port}" --rdzv-id="$SLURM_JOB_ID"' in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script and "NodeAddr=" in script
    assert '--output="$RUN_DIR/logs/slurm-%j.node%n.out"' in script


def _program_words(job: BatchJob, restart_count: int) -> list[str]:
    """The words bash passes after ``-m``: the script's own assignments, then its program line echoed."""
    script = render_sbatch(job).splitlines()
    start = next(i for i, line in enumerate(script) if line.startswith("restart_overrides=()"))
    assignments = [line for line in script[start : start + 2] if "restart_overrides" in line]
    (program,) = [line for line in script if line.startswith("    -m ")]
    snippet = "\n".join([f"SLURM_RESTART_COUNT={restart_count}", *assignments, "printf '%s\\n' " + program.removesuffix(" &")])
    result = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_trainer_overrides_reach_torchrun_word_for_word() -> None:
    assert _program_words(_job(), restart_count=0) == PROGRAM


def test_a_requeued_attempt_resumes_from_the_newest_checkpoint() -> None:
    assert _program_words(_job(), restart_count=1) == [*PROGRAM, "resume=auto"]
    other = replace(_job(), program=["-m", "launch.comm_check", "--out", "x"], resume_on_restart=False)
    assert _program_words(other, restart_count=2) == ["-m", "launch.comm_check", "--out", "x"]


def test_environment_hygiene() -> None:
    script = render_sbatch(_job())
    assert "source /runs/x/slurm/s/cluster.env" in script and "set -a" in script
    assert "PYTHONFAULTHANDLER=1" in script
    assert not re.search(r"(NCCL|GLOO)_\w+=", script), "network settings come from cluster.env_file, never from the launcher"
    assert "INFINITY_TRAIN_CONF=\"$CODE_DIR/conf\"" in script and "PYTHONSAFEPATH=1" in script
    assert "source" not in render_sbatch(_job(env_file=None))


def test_requeue_exit_is_turned_into_scontrol_requeue() -> None:
    script = render_sbatch(_job())
    assert "REQUEUE_EXIT=75" in script
    assert 'scontrol requeue "$job"' in script and 'job="${job:-$SLURM_JOB_ID}"' in script
    assert "trap " in script and 'kill -USR1 "$srun_pid"' in script
