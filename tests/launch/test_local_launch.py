"""``infinity-launch local``: torchrun standalone on one node, or a c10d rendezvous at an explicit
endpoint with the same command on every node (two "nodes" on this machine here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from launch.free_port import free_port

ROOT = Path(__file__).resolve().parents[2]


def _launch(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "launch.cli", "local", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen[str], timeout_s: float = 180) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout_s)
    return process.returncode, out


def test_standalone_two_processes_train_a_tokenizer(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out = _finish(_launch(
        "--nproc", "2", "--", "task=tokenizer", "tokenizer=cpu_d8", "tokenizer.base_channels=8", "parallel=ddp", "device=cpu",
        "data=synthetic64", f"data.root={tmp_path / 'data'}", "data.global_batch_size=2", "data.synthetic_train_samples=32",
        "data.synthetic_val_samples=0", "data.num_workers=0", "schedule.total_steps=3", "schedule.warmup_steps=1",
        "logging.log_every=1", "logging.wandb=disabled", f"run_dir={run_dir}",
    ))
    assert code == 0, out
    assert "--standalone" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 3 and summary["world_size"] == 2
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_two_nodes_meet_at_an_explicit_c10d_endpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    endpoint = f"127.0.0.1:{free_port()}"
    common = ["--nnodes", "2", "--nproc", "1", "--rdzv-endpoint", endpoint, "--comm-check", "--", "parallel=ddp", "device=cpu", f"run_dir={run_dir}"]
    nodes = [_launch(*common), _launch(*common)]
    results = [_finish(node) for node in nodes]
    for code, out in results:
        assert code == 0, out
    check = json.loads((run_dir / "comm_check.json").read_text())
    assert check["ok"] and check["world_size"] == 2 and sorted(r["rank"] for r in check["ranks"]) == [0, 1]


def test_several_nodes_need_an_endpoint() -> None:
    code, out = _finish(_launch("--nnodes", "2", "--", "parallel=ddp"))
    assert code == 2 and "--rdzv-endpoint" in out
