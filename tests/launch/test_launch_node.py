"""``launch.node``: torchrun whose node exit status carries the trainer's requeue code and whose agent
passes SIGUSR1 on to its workers instead of dying of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infinity_train import exit_codes
from launch.gpu_check import gpu_problem
from launch.node import node_exit_status, slurm_rendezvous_args
from launch.workers import worker_pids

ROOT = Path(__file__).resolve().parents[2]
WAIT_FOR_USR1 = """
import pathlib, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
pathlib.Path(sys.argv[1]).write_text("ready")
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
sys.exit(75 if got else 9)
"""


def _node(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "launch.node", *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([75], 75),
        ([75, 75], 75),
        ([75, 1], 1),
        ([3, 75], 3),
        ([-9], 137),
        ([75, -15], 143),
        ([], exit_codes.FAILURE),
    ],
)
def test_node_exit_status(codes: list[int], status: int) -> None:
    assert node_exit_status(codes) == status


def test_slurm_rendezvous_adds_the_node_address_and_makes_node_0_the_host() -> None:
    args = ["--nnodes=2", "-m", "infinity_train.train"]
    head = slurm_rendezvous_args(args, {"SLURMD_NODENAME": "gpu7", "SLURM_NODEID": "0"}, {"gpu7": "10.0.0.7"}.__getitem__)
    other = slurm_rendezvous_args(args, {"SLURMD_NODENAME": "gpu8", "SLURM_NODEID": "1"}, {"gpu8": "10.0.0.8"}.__getitem__)
    assert head == ["--local-addr=10.0.0.7", "--rdzv-conf=is_host=true", *args]
    assert other == ["--local-addr=10.0.0.8", "--rdzv-conf=is_host=false", *args]


def test_slurm_rendezvous_keeps_explicit_choices() -> None:
    args = ["--local-addr=1.2.3.4", "--rdzv-conf", "is_host=1", "-m", "x"]
    assert slurm_rendezvous_args(args, {"SLURMD_NODENAME": "n", "SLURM_NODEID": "1"}, lambda _: "9.9.9.9") == args


def test_requeue_exit_of_the_workers_is_the_exit_of_the_node() -> None:
    """Plain torchrun exits 1 here; the batch script could not tell a preemption from a crash."""
    node = _node("--", "--standalone", "--nnodes=1", "--nproc-per-node=2", "--no-python", "sh", "-c", "exit 75")
    out, _ = node.communicate(timeout=120)
    assert node.returncode == exit_codes.REQUEUE, out


def test_a_real_failure_is_not_mistaken_for_a_requeue() -> None:
    node = _node("--", "--standalone", "--nnodes=1", "--nproc-per-node=1", "--no-python", "sh", "-c", "exit 3")
    out, _ = node.communicate(timeout=120)
    assert node.returncode == 3, out


def test_sigusr1_to_the_agent_reaches_the_workers_and_their_75_comes_back(tmp_path: Path) -> None:
    """torchrun puts each worker in its own session: a signal to the agent's group misses them unless forwarded."""
    ready = tmp_path / "ready"
    node = _node("--", "--standalone", "--nnodes=1", "--nproc-per-node=1", "--no-python", sys.executable, "-c", WAIT_FOR_USR1, str(ready), start_new_session=True)
    deadline = time.monotonic() + 90
    while not ready.exists() and node.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), node.communicate(timeout=30)[0]
    os.killpg(node.pid, signal.SIGUSR1)
    out, _ = node.communicate(timeout=60)
    assert node.returncode == exit_codes.REQUEUE, out
    assert "SIGUSR1" in out


def test_missing_gpus_stop_the_node_with_one_clear_line() -> None:
    message = gpu_problem(8, {"SLURMD_NODENAME": "cpu12", "CUDA_VISIBLE_DEVICES": ""}, count_gpus=lambda: 0)
    assert message is not None
    assert "node cpu12 has 0 usable GPU(s)" in message and "cluster.gpus_per_node=8" in message
    assert gpu_problem(8, {}, count_gpus=lambda: 8) is None
    assert gpu_problem(0, {}, count_gpus=lambda: 0) is None


def test_node_on_a_machine_without_enough_gpus_exits_with_the_config_error() -> None:
    import torch

    expected = torch.cuda.device_count() + 1
    node = _node(f"--expect-gpus={expected}", "--", "--standalone", "--nproc-per-node=1", "--no-python", "true")
    out, _ = node.communicate(timeout=60)
    assert node.returncode == exit_codes.CONFIG_ERROR
    assert out.startswith("error: node ") and f"runs {expected} process(es) per node" in out


def test_worker_pids_are_the_children_that_lead_their_own_session() -> None:
    worker = subprocess.Popen(["sleep", "30"], start_new_session=True)
    helper = subprocess.Popen(["sleep", "30"])
    try:
        pids = worker_pids()
        assert worker.pid in pids and helper.pid not in pids
    finally:
        for process in (worker, helper):
            process.kill()
            process.wait()
