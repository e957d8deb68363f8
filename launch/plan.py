"""From the user's Hydra overrides to what a launch starts: the validated config, the number of nodes
and processes, the absolute run directory, and the overrides the trainer receives."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.config.schema import ClusterKind, TrainConfig
from infinity_train.run_dir import RunDirectory

LAUNCHER_KEYS = ("run_dir", "world_size")  # set by the launcher, so every rank and every restart agrees


def override_key(override: str) -> str:
    """``key`` of ``key=value`` / ``+key=value`` / ``++key=value`` / ``~key``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(overrides: list[str], key: str) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if "=" in o and override_key(o) == key]
    return values[-1] if values else None


@dataclass(frozen=True)
class LaunchPlan:
    cfg: TrainConfig
    resolved: DictConfig
    run_dir: Path
    nnodes: int
    nproc_per_node: int
    trainer_overrides: list[str]

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def plan_launch(overrides: list[str], nnodes: int, nproc_per_node: int) -> LaunchPlan:
    """Compose and validate the config for ``nnodes`` x ``nproc_per_node`` processes (ConfigError if invalid)."""
    if nnodes < 1 or nproc_per_node < 1:
        raise ConfigError(f"a launch needs at least one node and one process per node, got {nnodes} x {nproc_per_node}")
    world_size = nnodes * nproc_per_node
    asked = override_value(overrides, "world_size")
    if asked is not None and asked != str(world_size):
        raise ConfigError(
            f"world_size={asked} but this launch starts {world_size} processes ({nnodes} node(s) x {nproc_per_node}); "
            "leave world_size out, the launcher sets it"
        )
    user = [o for o in overrides if override_key(o) not in LAUNCHER_KEYS]
    resolved = load_config([*user, *_kept(overrides, "run_dir"), f"world_size={world_size}"])
    run_dir = RunDirectory.for_config(resolved).path
    resolved.run_dir = str(run_dir)
    cfg = validate(to_typed(resolved))
    trainer_overrides = [*user, f"run_dir={hydra_quote(str(run_dir))}", f"world_size={world_size}"]
    return LaunchPlan(cfg, resolved, run_dir, nnodes, nproc_per_node, trainer_overrides)


def _kept(overrides: list[str], key: str) -> list[str]:
    return [o for o in overrides if override_key(o) == key]


def hydra_quote(value: str) -> str:
    """A value as one Hydra override token: plain when it is a simple path, else single-quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plan_slurm(overrides: list[str]) -> LaunchPlan:
    """A launch sized by the config's ``cluster`` group (``cluster=slurm`` unless another one is chosen):
    ``cluster.nodes`` nodes, one process per GPU (one per node on CPU nodes)."""
    if override_value(overrides, "cluster") is None:
        overrides = ["cluster=slurm", *overrides]
    cluster = to_typed(load_config(overrides)).cluster
    if cluster.kind != ClusterKind.slurm:
        raise ConfigError(f"cluster={cluster.name} is a {cluster.kind.value} cluster; pick a Slurm one (cluster=slurm or your own conf/cluster/<name>.yaml with kind: slurm)")
    return plan_launch(overrides, cluster.nodes, max(cluster.gpus_per_node, 1))
