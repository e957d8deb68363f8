"""What ``infinity-launch slurm`` writes before sbatch: a code snapshot, the resolved config, the env
file copy and the script; ``--dry-run`` writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infinity_train.config import ConfigError
from launch.env_file import resolve_env_file
from launch.plan import plan_slurm
from launch.snapshot import PACKAGES, code_sources, snapshot_code
from launch.submit import job_name, plan_submission, write_submission

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _source_tree(root: Path) -> dict[str, Path]:
    sources = {}
    for item in (*PACKAGES, "conf"):
        (root / item / "__pycache__").mkdir(parents=True)
        (root / item / "module.py").write_text(f"NAME = {item!r}\n")
        (root / item / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\0")
        sources[item] = root / item
    return sources


def test_snapshot_is_a_frozen_copy_without_bytecode(tmp_path: Path) -> None:
    sources = _source_tree(tmp_path / "src")
    dest = snapshot_code(tmp_path / "snap", sources)
    (sources["launch"] / "module.py").write_text("NAME = 'edited later'\n")
    assert (dest / "launch" / "module.py").read_text() == "NAME = 'launch'\n"
    assert sorted(p.name for p in dest.iterdir()) == sorted([*PACKAGES, "conf"])
    assert not list(dest.rglob("__pycache__"))


def test_snapshot_sources_are_what_this_process_imports() -> None:
    sources = code_sources()
    assert sources["launch"] == ROOT / "launch" and sources["infinity_train"] == ROOT / "infinity_train"
    assert sources["conf"] == ROOT / "conf"


def test_snapshot_of_a_missing_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        snapshot_code(tmp_path / "snap", {"launch": tmp_path / "nowhere"})


def test_env_file_is_found_in_the_working_directory_then_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "mine.env").write_text("NCCL_DEBUG=WARN\n")
    assert resolve_env_file("mine.env", tmp_path) == tmp_path / "mine.env"
    assert resolve_env_file("conf/cluster/env/loopback.env", tmp_path) == ROOT / "conf/cluster/env/loopback.env"
    assert resolve_env_file(None, tmp_path) is None
    with pytest.raises(ConfigError, match="cluster.env_file=nope.env not found"):
        resolve_env_file("nope.env", tmp_path)


def test_submission_holds_snapshot_config_env_and_script(tmp_path: Path) -> None:
    plan = plan_slurm(["cluster=slurm_test", "parallel=ddp", f"run_dir={tmp_path / 'run'}", "name=exp/one"])
    submission = plan_submission(plan, tmp_path)
    script = write_submission(submission, plan)
    directory = submission.directory
    assert directory.parent == tmp_path / "run" / "slurm"
    assert (directory / "code" / "launch" / "node.py").is_file() and (directory / "code" / "conf" / "config.yaml").is_file()
    config = yaml.safe_load((directory / "config.yaml").read_text())
    assert config["world_size"] == 2 and config["run_dir"] == str(tmp_path / "run") and config["cluster"]["nodes"] == 2
    assert (directory / "cluster.env").read_text() == (ROOT / "conf/cluster/env/loopback.env").read_text()
    text = script.read_text()
    assert f"CODE_DIR={directory / 'code'}" in text and f"source {directory / 'cluster.env'}" in text
    assert "#SBATCH --job-name=exp-one" in text
    assert plan_submission(plan, tmp_path).directory != directory, "a second submission never reuses a snapshot"


def test_job_names_are_one_shell_word() -> None:
    assert job_name("sweep/depth2 d16") == "sweep-depth2-d16"
    assert job_name("///") == "infinity-train"


def test_dry_run_prints_the_script_and_writes_nothing(tmp_path: Path) -> None:
    result = _cli("slurm", "--dry-run", "--", "cluster=slurm_test", "parallel=ddp", "run_dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash\n") and "#SBATCH --nodes=2" in result.stdout
    assert f"RUN_DIR={tmp_path / 'run'}" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_overrides_stop_the_launcher_with_status_2(tmp_path: Path) -> None:
    result = _cli("slurm", "--dry-run", "--", "cluster.nodez=3", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "nodez" in result.stderr
    result = _cli("slurm", "--dry-run", "--", "cluster=local", cwd=tmp_path)
    assert result.returncode == 2 and "pick a Slurm one" in result.stderr
