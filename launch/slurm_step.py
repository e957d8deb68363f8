"""torchrun arguments for a task of a Slurm job step (one task per node) that must find the rendezvous
on its own, as the tasks of a submitit job do: the head node's ``NodeAddr`` from ``scontrol``, and a
port that node 0 picks and leaves in a file on the shared file system."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from launch.free_port import free_port
from launch.node import slurm_rendezvous_args
from launch.slurm_nodes import node_addr
from launch.torchrun_args import multinode_args


def head_node(env: Mapping[str, str]) -> str:
    result = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()[0]


def shared_port(path: Path, env: Mapping[str, str], timeout_s: float = 300.0) -> int:
    """Node 0 picks a free port and writes it to ``path``; the other nodes wait for the file."""
    if env.get("SLURM_NODEID", "0") == "0":
        port = free_port()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, path)
        return port
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        time.sleep(0.2)
    raise TimeoutError(f"node 0 wrote no rendezvous port to {path} within {timeout_s:.0f} s")


def step_torchrun_args(nproc_per_node: int, program: list[str], rendezvous_dir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    job, restart = env["SLURM_JOB_ID"], env.get("SLURM_RESTART_COUNT", "0")
    port = shared_port(rendezvous_dir / f"rendezvous-{job}-{restart}.port", env)
    endpoint = f"{node_addr(head_node(env))}:{port}"
    args = multinode_args(int(env["SLURM_NNODES"]), nproc_per_node, endpoint, f"{job}-{restart}", program)
    return slurm_rendezvous_args(args, env, node_addr)
