"""Prepare a Slurm submission in the run directory and hand it to sbatch.

    <run_dir>/slurm/<stamp>/code/        snapshot of the packages and conf/ the job runs
    <run_dir>/slurm/<stamp>/config.yaml  the resolved config at submission
    <run_dir>/slurm/<stamp>/cluster.env  copy of cluster.env_file (when set)
    <run_dir>/slurm/<stamp>/job.sbatch   the batch script
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from launch.env_file import resolve_env_file
from launch.plan import LaunchPlan
from launch.sbatch_script import BatchJob, render_sbatch
from launch.snapshot import snapshot_code
from launch.torchrun_args import trainer_program


@dataclass(frozen=True)
class Submission:
    directory: Path
    job: BatchJob
    env_source: Path | None  # the cluster.env_file that is copied to job.env_file

    @property
    def script_path(self) -> Path:
        return self.directory / "job.sbatch"

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"


def job_name(run_name: str) -> str:
    """The run name as a Slurm job name (one shell word)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-") or "infinity-train"


def _new_directory(run_dir: Path) -> Path:
    base = run_dir / "slurm" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def plan_submission(plan: LaunchPlan, cwd: Path, program: list[str] | None = None, python: str = sys.executable) -> Submission:
    """Where everything of this submission goes; nothing is written yet."""
    directory = _new_directory(plan.run_dir)
    env_source = resolve_env_file(plan.cfg.cluster.env_file, cwd)
    job = BatchJob(
        name=job_name(plan.cfg.name),
        cluster=plan.cfg.cluster,
        run_dir=plan.run_dir,
        code_dir=directory / "code",
        workdir=cwd.resolve(),
        python=python,
        nproc_per_node=plan.nproc_per_node,
        program=program if program is not None else trainer_program(plan.trainer_overrides),
        env_file=directory / "cluster.env" if env_source else None,
        resume_on_restart=program is None,
    )
    return Submission(directory, job, env_source)


def write_submission(submission: Submission, plan: LaunchPlan) -> Path:
    """Snapshot the code, record the config, copy the env file and write the script; returns its path."""
    snapshot_code(submission.job.code_dir)
    submission.config_path.write_text(OmegaConf.to_yaml(plan.resolved, resolve=True))
    if submission.env_source and submission.job.env_file:
        shutil.copyfile(submission.env_source, submission.job.env_file)
    (plan.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    submission.script_path.write_text(render_sbatch(submission.job))
    return submission.script_path


def sbatch(script: Path, wait: bool = False, env: Mapping[str, str] | None = None) -> int:
    """Submit ``script``; with ``wait``, block until the job ends (requeues included) and return its
    exit status. sbatch's own messages pass through."""
    argv = ["sbatch", *(["--wait"] if wait else []), str(script)]
    if shutil.which("sbatch", path=(env or {}).get("PATH")) is None:
        print("error: sbatch not found: run this on a Slurm login node (or use --dry-run)", file=sys.stderr)
        return 1
    return subprocess.run(argv, env=None if env is None else dict(env)).returncode
