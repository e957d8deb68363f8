"""Does this node have the GPUs the job asked for? One clear line when it does not."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_problem(expected: int, env: Mapping[str, str] | None = None, count_gpus: Callable[[], int] = _visible_gpus) -> str | None:
    """None when at least ``expected`` GPUs are visible here, else the message to stop the job with."""
    if expected <= 0:
        return None
    found = count_gpus()
    if found >= expected:
        return None
    env = os.environ if env is None else env
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    visible = env.get("CUDA_VISIBLE_DEVICES", "<unset>")
    return (
        f"node {node} has {found} usable GPU(s) (CUDA_VISIBLE_DEVICES={visible}) but the job runs {expected} "
        f"process(es) per node, one per GPU (cluster.gpus_per_node={expected}): pick a GPU partition or constraint, "
        f"check the node's driver with nvidia-smi, or set cluster.gpus_per_node=0 device=cpu for a CPU job"
    )
