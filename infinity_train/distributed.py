"""Who am I in the job: rank, world size and rendezvous, read from torchrun's or Slurm's environment
by one function, and the process group set up from it."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun" | "slurm" | "single"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list such as ``gpu[003-005,009],cpu1`` or
    ``rack[1-2]-node[01-04]`` (without calling scontrol): every bracket takes its first value."""
    first_entry = re.match(r"^(?:[^,\[]|\[[^\]]*\])+", nodelist.strip())
    if not first_entry:
        raise ValueError(f"cannot parse SLURM_JOB_NODELIST={nodelist!r}")
    return re.sub(r"\[([^\]]+)\]", lambda m: re.split(r"[,-]", m.group(1))[0], first_entry.group(0))


def current_rank_and_size() -> tuple[int, int]:
    """(rank, world size): torch.distributed's when initialized, else what ``detect_world`` reads from the
    launcher's environment (torchrun or a Slurm job step), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = detect_world()
    return world.rank, world.world_size


def detect_world(env: Mapping[str, str] | None = None) -> World:
    """torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, ...) win; else Slurm's one-task-per-process
    variables (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_JOB_NODELIST); else a single process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world_size = int(env["WORLD_SIZE"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", world_size))
        rank = int(env["RANK"])
        return World(
            rank=rank,
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=world_size,
            local_world_size=local_world,
            node_rank=int(env.get("GROUP_RANK", rank // max(local_world, 1))),
            num_nodes=max(1, world_size // max(local_world, 1)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", DEFAULT_PORT)),
            launcher="torchrun",
        )
    # Inside a job step only: the batch shell also has SLURM_PROCID=0 and SLURM_NTASKS=<nodes>, but
    # a process started there is alone, and waiting for the other "ranks" would hang forever.
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "SLURM_STEP_ID" in env:
        world_size = int(env["SLURM_NTASKS"])
        num_nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", 1)))
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0] or max(1, world_size // num_nodes))
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        return World(
            rank=int(env["SLURM_PROCID"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            world_size=world_size,
            local_world_size=local_world,
            node_rank=int(env.get("SLURM_NODEID", 0)),
            num_nodes=num_nodes,
            master_addr=env.get("MASTER_ADDR") or first_slurm_host(nodelist),
            master_port=int(env.get("MASTER_PORT", DEFAULT_PORT)),
            launcher="slurm",
        )
    return World(0, 0, 1, 1, 0, 1, "127.0.0.1", DEFAULT_PORT, "single")


class DeviceError(ValueError):
    """A device setting this machine cannot honour, phrased as one line."""


def select_device(requested: str, world: World) -> torch.device:
    """``auto`` is this process's GPU when CUDA is available, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device={requested} but CUDA is not available on this node ({os.uname().nodename}); use device=cpu or device=auto")
    if world.local_rank >= torch.cuda.device_count():
        raise DeviceError(
            f"local rank {world.local_rank} needs a GPU but node {os.uname().nodename} has only "
            f"{torch.cuda.device_count()}: check --gpus-per-node / --nproc-per-node"
        )
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def init_process_group(world: World, device: torch.device, timeout_s: float = 1800.0) -> None:
    """NCCL on GPUs, gloo on CPUs; nothing for a single process."""
    if not world.is_distributed or dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", world.master_addr)
    os.environ.setdefault("MASTER_PORT", str(world.master_port))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        rank=world.rank,
        world_size=world.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(value: object, src: int = 0) -> object:
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]
