"""torchrun command lines for launches outside Slurm: one node (standalone rendezvous) or several
nodes meeting at an explicit c10d endpoint (the same command runs on every node)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def trainer_program(overrides: list[str]) -> list[str]:
    return ["-m", "infinity_train.train", *overrides]


def standalone_args(nproc_per_node: int, program: list[str]) -> list[str]:
    return ["--standalone", "--nnodes=1", f"--nproc-per-node={nproc_per_node}", *program]


def rendezvous_id(run_dir: Path) -> str:
    """Derived from the run directory, so every node computes the same id without talking."""
    return "infinity-" + hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]


def multinode_args(nnodes: int, nproc_per_node: int, endpoint: str, rdzv_id: str, program: list[str]) -> list[str]:
    if ":" not in endpoint:
        raise ValueError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    return [
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}",
        *program,
    ]
