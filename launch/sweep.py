"""``infinity-launch sweep``: a Hydra multirun through the submitit Slurm launcher, one job per point.

    <sweep_dir>/code/                                  snapshot the jobs import (as for a single job)
    <sweep_dir>/cluster.env                            copy of cluster.env_file
    <sweep_dir>/hydra_conf/hydra/launcher/infinity_slurm.yaml   submitit settings from the cluster config
    <sweep_dir>/runs/<job num>/                        one run directory per point
    <sweep_dir>/.submitit/<job id>/                    submitit's per-node logs and pickles

The command blocks until every job has finished (requeues included), as Hydra multirun does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from infinity_train.config import ConfigError, load_config, to_typed
from infinity_train.config.schema import ClusterConfig, ClusterKind
from launch.env_file import resolve_env_file
from launch.plan import override_key, override_value
from launch.snapshot import snapshot_code
from launch.submitit_params import launcher_config

LAUNCHER_OPTION = "infinity_slurm"


def sweep_cluster(overrides: list[str]) -> ClusterConfig:
    """The cluster of the sweep (``cluster=slurm`` unless chosen); it cannot itself be swept."""
    cluster_overrides = [o for o in overrides if override_key(o).split(".")[0] == "cluster"]
    for override in cluster_overrides:
        if "," in override.split("=", 1)[-1]:
            raise ConfigError(f"{override}: the cluster cannot be swept; run one sweep per cluster")
    if override_value(cluster_overrides, "cluster") is None:
        cluster_overrides.insert(0, "cluster=slurm")
    cluster = to_typed(load_config(cluster_overrides)).cluster
    if cluster.kind != ClusterKind.slurm:
        raise ConfigError(f"cluster={cluster.name} is a {cluster.kind.value} cluster; a sweep needs a Slurm one")
    return cluster


def default_sweep_dir(cwd: Path) -> Path:
    return cwd / "runs" / "sweeps" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def job_environment(code_dir: Path) -> dict[str, str]:
    """What the submitting process and, through sbatch's --export=ALL, every job runs with."""
    return {
        "PYTHONPATH": os.pathsep.join([str(code_dir), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONSAFEPATH": "1",
        "INFINITY_TRAIN_CONF": str(code_dir / "conf"),
        "SUBMITIT_PREEMPT_SIGNAL": "USR1",  # submitit's --signal=USR1@<lead>, the signal the trainer acts on
        "PYTHONFAULTHANDLER": "1",
    }


def setup_lines(env_file: Path | None) -> list[str]:
    lines = ["export PYTHONFAULTHANDLER=1 PYTHONUNBUFFERED=1"]
    if env_file:
        lines += ["set -a", f"source {shlex.quote(str(env_file))}", "set +a"]
    return lines


def sweep_command(sweep_dir: Path, overrides: list[str], python: str = sys.executable) -> list[str]:
    cluster_default = [] if override_value(overrides, "cluster") is not None else ["cluster=slurm"]
    return [
        python, "-m", "launch.sweep_app", "--multirun",
        "--config-dir", str(sweep_dir / "hydra_conf"),
        f"hydra/launcher={LAUNCHER_OPTION}",
        f"hydra.sweep.dir={sweep_dir / 'runs'}",
        *cluster_default, *overrides,
    ]


def run_sweep(overrides: list[str], sweep_dir: Path, cwd: Path, dry_run: bool = False) -> int:
    cluster = sweep_cluster(overrides)
    env_source = resolve_env_file(cluster.env_file, cwd)
    env_copy = sweep_dir / "cluster.env" if env_source else None
    config = launcher_config(cluster, setup_lines(env_copy), sweep_dir / ".submitit")
    command = sweep_command(sweep_dir, overrides)
    env = job_environment(sweep_dir / "code")
    if dry_run:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(command))
        return 0
    snapshot_code(sweep_dir / "code")
    if env_source and env_copy:
        shutil.copyfile(env_source, env_copy)
    launcher_dir = sweep_dir / "hydra_conf" / "hydra" / "launcher"
    launcher_dir.mkdir(parents=True)
    (launcher_dir / f"{LAUNCHER_OPTION}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"[infinity-launch] sweep in {sweep_dir}: {shlex.join(command)}", file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=cwd, env=dict(os.environ, **env)).returncode
