"""Expand a ``sweep`` config into one run per (depth, d): its name, its overrides and its size."""

from __future__ import annotations

from dataclasses import dataclass, field

from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.config.schema import TrainConfig
from infinity_train.sizing import describe_config


@dataclass
class PlannedRun:
    name: str
    depth: int
    bits: int
    overrides: list[str]
    description: dict = field(default_factory=dict)


def plan_sweep(sweep_overrides: list[str]) -> tuple[TrainConfig, list[PlannedRun]]:
    """The sweep config composed from ``sweep_overrides`` and its runs, each validated and described.

    Every run starts from the sweep's ``model`` option with ``model.depth`` set, so the runs are one
    consistent family; ``sweep.overrides`` apply to all runs and ``sweep.run_overrides[name]`` to one.
    """
    base = validate(to_typed(load_config(sweep_overrides)))
    sweep = base.sweep
    if not sweep.depths or not sweep.bits:
        raise ConfigError(f"sweep={sweep.name} has no runs: set sweep.depths and sweep.bits (or pick sweep=cpu_small)")
    unknown = set(sweep.run_overrides) - {f"depth{dep}_d{bits}" for dep in sweep.depths for bits in sweep.bits}
    if unknown:
        raise ConfigError(f"sweep.run_overrides names runs that are not in the grid: {', '.join(sorted(unknown))}")
    runs: list[PlannedRun] = []
    for depth in sweep.depths:
        for bits in sweep.bits:
            name = f"depth{depth}_d{bits}"
            overrides = [
                *sweep_overrides,
                f"model={sweep.model}",
                f"model.depth={depth}",
                f"tokenizer.d={bits}",
                f"name={base.name}/{name}",
                *sweep.overrides,
                *sweep.run_overrides.get(name, []),
            ]
            cfg = validate(to_typed(load_config(overrides)))
            runs.append(PlannedRun(name, depth, bits, overrides, describe_config(cfg)))
    return base, runs
