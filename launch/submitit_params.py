"""The hydra-submitit-launcher settings of a sweep, taken from the ``cluster`` config so a sweep job
asks Slurm for the same resources, signal and requeue behaviour as ``infinity-launch slurm``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from infinity_train.config import ConfigError
from infinity_train.config.schema import ClusterConfig


def slurm_minutes(limit: str) -> int:
    """Minutes of a Slurm time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", limit.strip())
    if not match:
        raise ConfigError(f"cluster.time={limit!r} is not a Slurm time limit (such as 24:00:00 or 2-00:00:00)")
    days, first, second, third = match.groups()
    if days is not None:
        hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
    elif third is not None:
        hours, minutes, seconds = int(first), int(second), int(third)
    else:
        hours, minutes, seconds = 0, int(first), int(second or 0)
    return int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def _directive_as_parameter(directive: str) -> tuple[str, Any]:
    option = directive.strip().removeprefix("#SBATCH").strip().lstrip("-")
    key, _, value = option.partition("=")
    return key, (value if value else True)


def launcher_config(cluster: ClusterConfig, setup: list[str], submitit_folder: Path) -> dict[str, Any]:
    """The body of a ``hydra/launcher`` option on top of ``submitit_slurm``."""
    extra: dict[str, Any] = dict(_directive_as_parameter(d) for d in cluster.extra_directives)
    if cluster.mem:
        extra["mem"] = cluster.mem
    extra["requeue" if cluster.requeue else "no-requeue"] = True
    config: dict[str, Any] = {
        "defaults": ["submitit_slurm"],
        "submitit_folder": str(submitit_folder / "%j"),
        "nodes": cluster.nodes,
        "tasks_per_node": 1,
        "cpus_per_task": cluster.cpus_per_task,
        "gpus_per_node": cluster.gpus_per_node or None,
        "timeout_min": slurm_minutes(cluster.time),
        "partition": cluster.partition,
        "account": cluster.account,
        "qos": cluster.qos,
        "constraint": cluster.constraint,
        "signal_delay_s": cluster.signal_lead_s,
        "additional_parameters": extra,
        "setup": setup,
    }
    return config
