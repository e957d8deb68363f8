"""``infinity-launch sweep`` settings: submitit launcher parameters from the cluster config, requeue
targets of array tasks, and the trainer overrides of one sweep point."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from infinity_train.config import ConfigError
from infinity_train.config.schema import ClusterConfig, ClusterKind
from launch.submitit_params import launcher_config, slurm_minutes
from launch.sweep import sweep_cluster, sweep_command
from launch.sweep_app import point_overrides, requeue_target

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ClusterConfig(
    name="big", kind=ClusterKind.slurm, nodes=2, gpus_per_node=8, cpus_per_task=32, mem="400G", time="1-12:00:00",
    partition="gpu", account="acct", qos="q", constraint="h100", extra_directives=["--exclusive", "#SBATCH --comment=x"],
    env_file=None, signal_lead_s=240, requeue=True,
)


@pytest.mark.parametrize(("limit", "minutes"), [("90", 90), ("10:30", 11), ("24:00:00", 1440), ("1-12:00:00", 2160), ("2-03", 3060), ("0-00:05", 5)])
def test_slurm_time_limits_in_minutes(limit: str, minutes: int) -> None:
    assert slurm_minutes(limit) == minutes


def test_a_malformed_time_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Slurm time limit"):
        slurm_minutes("one day")


def test_launcher_asks_for_the_same_resources_as_a_single_job(tmp_path: Path) -> None:
    config = launcher_config(CLUSTER, ["export A=1"], tmp_path)
    assert config["defaults"] == ["submitit_slurm"]
    assert (config["nodes"], config["tasks_per_node"], config["gpus_per_node"], config["cpus_per_task"]) == (2, 1, 8, 32)
    assert (config["timeout_min"], config["signal_delay_s"], config["partition"], config["account"]) == (2160, 240, "gpu", "acct")
    assert config["additional_parameters"] == {"exclusive": True, "comment": "x", "mem": "400G", "requeue": True}
    assert config["submitit_folder"] == f"{tmp_path}/%j" and config["setup"] == ["export A=1"]
    assert launcher_config(replace(CLUSTER, requeue=False, gpus_per_node=0), [], tmp_path)["additional_parameters"]["no-requeue"] is True


def test_the_cluster_of_a_sweep_cannot_be_swept() -> None:
    assert sweep_cluster(["cluster=slurm_test", "model.depth=1,2"]).nodes == 2
    assert sweep_cluster(["model.depth=1,2"]).name == "slurm"
    with pytest.raises(ConfigError, match="cannot be swept"):
        sweep_cluster(["cluster.nodes=1,2"])
    with pytest.raises(ConfigError, match="needs a Slurm one"):
        sweep_cluster(["cluster=local"])


def test_sweep_command_is_a_submitit_multirun(tmp_path: Path) -> None:
    command = sweep_command(tmp_path, ["model.depth=1,2"], python="py")
    assert command[:4] == ["py", "-m", "launch.sweep_app", "--multirun"]
    assert "hydra/launcher=infinity_slurm" in command and f"hydra.sweep.dir={tmp_path / 'runs'}" in command
    assert command[-2:] == ["cluster=slurm", "model.depth=1,2"]


def test_array_tasks_are_requeued_one_by_one() -> None:
    assert requeue_target({"SLURM_JOB_ID": "12", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "1"}) == "12_1"
    assert requeue_target({"SLURM_JOB_ID": "40"}) == "40"


def test_point_overrides_set_run_dir_and_world_size_and_resume_after_a_restart(tmp_path: Path) -> None:
    task = ["model.depth=2", "run_dir=elsewhere", "world_size=1"]
    assert point_overrides(task, tmp_path, 16, restart_count=0) == ["model.depth=2", f"run_dir={tmp_path}", "world_size=16"]
    assert point_overrides(task, tmp_path, 16, restart_count=1)[-1] == "resume=auto"


def test_dry_run_prints_the_launcher_settings_and_writes_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "launch.cli", "sweep", "--dry-run", "--sweep-dir", str(tmp_path / "s"), "--", "cluster=slurm_test", "model.depth=1,2"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "- submitit_slurm" in result.stdout and "SUBMITIT_PREEMPT_SIGNAL=USR1" in result.stdout
    assert "source " in result.stdout and "launch.sweep_app --multirun" in result.stdout
    assert list(tmp_path.iterdir()) == []
