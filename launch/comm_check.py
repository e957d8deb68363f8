"""A collective over every rank of a launch, to check rendezvous and networking before a long run.

    torchrun ... -m launch.comm_check --out RESULT.json [--device auto|cpu|cuda]

Every rank joins the process group (NCCL on GPUs, gloo on CPUs) through the same ``detect_world`` as
the trainer, all-reduces its rank and gathers where it runs; rank 0 writes the result as JSON. Exit 0
when the sum is right and every rank agrees on the world, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from infinity_train.distributed import destroy_process_group, detect_world, init_process_group, select_device


def _describe_rank(rank: int, local_rank: int, world_size: int) -> dict[str, object]:
    return {
        "rank": rank,
        "local_rank": local_rank,
        "world_size": world_size,
        "host": socket.gethostname(),
        "slurm_node": os.environ.get("SLURMD_NODENAME"),
        "slurm_node_id": os.environ.get("SLURM_NODEID"),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
        "master": f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}",
        "pid": os.getpid(),
    }


def _imported_from() -> dict[str, str]:
    """Where the project's packages were imported from (a Slurm job must use its code snapshot)."""
    import infinity_train
    import launch

    return {"infinity_train": str(Path(infinity_train.__file__).parent), "launch": str(Path(launch.__file__).parent)}


def check(out: Path, device_name: str) -> bool:
    world = detect_world()
    device = select_device(device_name, world)
    init_process_group(world, device, timeout_s=120.0)
    try:
        total = torch.tensor([float(world.rank + 1)], device=device)
        if dist.is_initialized():
            dist.all_reduce(total)
        ranks: list[object] = [None] * world.world_size
        me = _describe_rank(world.rank, world.local_rank, world.world_size)
        if dist.is_initialized():
            dist.all_gather_object(ranks, me)
        else:
            ranks = [me]
        expected = world.world_size * (world.world_size + 1) / 2
        ok = float(total.item()) == expected and all(r["world_size"] == world.world_size for r in ranks)  # type: ignore[index]
        if world.is_main:
            out.parent.mkdir(parents=True, exist_ok=True)
            result = {
                "ok": ok,
                "world_size": world.world_size,
                "sum": float(total.item()),
                "expected": expected,
                "backend": dist.get_backend() if dist.is_initialized() else None,
                "imports": _imported_from(),
                "ranks": ranks,
            }
            out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[comm_check] rank {world.rank}/{world.world_size} on {me['host']} ({me['slurm_node']}): sum {total.item():g}, expected {expected:g}", flush=True)
        return ok
    finally:
        destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.comm_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="where rank 0 writes the result (JSON)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    return 0 if check(args.out, args.device) else 1


if __name__ == "__main__":
    sys.exit(main())
