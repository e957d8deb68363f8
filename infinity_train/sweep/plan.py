"""Expand a ``sweep`` config into runs: one tokenizer per bit width d, then one transformer run per
(depth, d), and per smaller image budget either a cooldown branch (warmup-stable-decay schedules) or
a run of its own.

A warmup-stable-decay run's stable phase does not depend on its length, so the run for the largest
budget also yields every smaller budget B: at step ``steps(B) - cooldown(B)`` it keeps a checkpoint,
and a branch run starts there and cools down over its last ``cooldown(B)`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.config.schema import ScheduleName, TrainConfig
from infinity_train.sizing import describe_config


@dataclass
class PlannedRun:
    name: str  # relative to the sweep directory: tokenizers/d8, depth2_d8, depth2_d8/branches/4096
    kind: str  # tokenizer | transformer | branch
    run_dir: Path
    overrides: list[str]
    after: list[str] = field(default_factory=list)  # names of runs that must finish first
    depth: int | None = None
    bits: int | None = None
    budget_images: int | None = None
    description: dict = field(default_factory=dict)


@dataclass
class SweepPlan:
    config: TrainConfig
    root: Path
    runs: list[PlannedRun]

    def stage(self, kind: str) -> list[PlannedRun]:
        return [run for run in self.runs if run.kind == kind]


def steps_for(images: int, cfg: TrainConfig) -> int:
    return math.ceil(images / cfg.data.global_batch_size)


def cooldown_start(total_steps: int, cfg: TrainConfig) -> int:
    return total_steps - round(cfg.schedule.decay_fraction * total_steps)


def _compose(overrides: list[str]) -> TrainConfig:
    return validate(to_typed(load_config(overrides)))


def plan_sweep(sweep_overrides: list[str]) -> SweepPlan:
    """The runs of the sweep composed from ``sweep_overrides``; every run's config is validated here,
    so a bad grid fails before anything trains."""
    base = _compose(sweep_overrides)
    sweep = base.sweep
    if not sweep.depths or not sweep.bits or not sweep.image_budgets:
        raise ConfigError(f"sweep={sweep.name} has no runs: set sweep.depths, sweep.bits and sweep.image_budgets (or pick sweep=cpu_small)")
    if sweep.seeds < 1:
        raise ConfigError(f"sweep.seeds must be >= 1, got {sweep.seeds}")
    names = {f"depth{depth}_d{bits}" for depth in sweep.depths for bits in sweep.bits}
    unknown = set(sweep.run_overrides) - names
    if unknown:
        raise ConfigError(f"sweep.run_overrides names runs that are not in the grid: {', '.join(sorted(unknown))}")
    root = Path(base.run_dir) if base.run_dir else Path("runs") / sweep.name
    runs = [_tokenizer_run(sweep_overrides, base, root, bits) for bits in sweep.bits]
    runs += [_tokenizer_run(sweep_overrides, base, root, bits, seed) for seed in range(1, sweep.seeds) for bits in sweep.bits
             if not sweep.tokenizer_checkpoints.get(str(bits))]
    for depth in sweep.depths:
        for bits in sweep.bits:
            runs += _transformer_runs(sweep_overrides, base, root, depth, bits)
    smallest = min(sweep.depths)
    for seed in range(1, sweep.seeds):
        for bits in sweep.bits:
            runs += _transformer_runs(sweep_overrides, base, root, smallest, bits, seed)
    return SweepPlan(base, root, runs)


def tokenizer_option(base: TrainConfig) -> list[str]:
    """``tokenizer=<option>`` for every run when the sweep names one (e.g. pca), else nothing."""
    return [f"tokenizer={base.sweep.tokenizer}"] if base.sweep.tokenizer else []


def _tokenizer_run(sweep_overrides: list[str], base: TrainConfig, root: Path, bits: int, seed: int = 0) -> PlannedRun:
    """The tokenizer of d bits; ``seed`` > 0: a second fit or training with another seed, which only
    measures the tokenizer's seed-to-seed spread (the transformers use seed 0's)."""
    suffix = f"_seed{seed}" if seed else ""
    name = f"tokenizers/d{bits}{suffix}"
    run_dir = root / name
    reused = None if seed else base.sweep.tokenizer_checkpoints.get(str(bits))
    overrides = [
        *sweep_overrides, *tokenizer_option(base), *base.sweep.tokenizer_overrides, "task=tokenizer", f"tokenizer.d={bits}",
        *([f"seed={seed}"] if seed else []), f"name={base.sweep.name}/tokenizer_d{bits}{suffix}", f"run_dir={run_dir}",
    ]  # fmt: skip
    _compose(overrides)
    kind = "reused" if reused else "tokenizer"
    return PlannedRun(name, kind, Path(reused) if reused else run_dir, overrides, bits=bits)


def _transformer_runs(sweep_overrides: list[str], base: TrainConfig, root: Path, depth: int, bits: int, seed: int = 0) -> list[PlannedRun]:
    """The runs of one (depth, d): every budget (or cooldown branch); with ``seed`` > 0 only the
    largest budget, as ``depth<D>_d<d>_seed<s>`` (the seed-to-seed spread of the smallest size)."""
    sweep = base.sweep
    name = f"depth{depth}_d{bits}" + (f"_seed{seed}" if seed else "")
    tokenizer = sweep.tokenizer_checkpoints.get(str(bits)) or str(root / "tokenizers" / f"d{bits}")
    common = [
        *sweep_overrides,
        *tokenizer_option(base),
        f"model={sweep.model}",
        f"model.depth={depth}",
        f"tokenizer.d={bits}",
        *sweep.overrides,
        *sweep.run_overrides.get(f"depth{depth}_d{bits}", []),
        *([f"seed={seed}"] if seed else []),
        f"tokenizer.checkpoint={tokenizer}",
    ]
    shaped = _compose(common)  # the run's own batch size and schedule decide its step counts
    budgets = sorted(set(sweep.image_budgets))
    if seed:
        budgets = budgets[-1:]
    largest = steps_for(budgets[-1], shaped)
    after = [f"tokenizers/d{bits}"]
    if shaped.schedule.name != ScheduleName.wsd or len(budgets) == 1:
        runs = []
        for images in budgets:
            run_name = name if images == budgets[-1] else f"{name}_{images}img"
            overrides = [*common, f"schedule.total_steps={steps_for(images, shaped)}", f"name={sweep.name}/{run_name}", f"run_dir={root / run_name}"]
            runs.append(_planned(run_name, "transformer", root / run_name, overrides, after, depth, bits, images))
        return runs

    branch_points = {images: cooldown_start(steps_for(images, shaped), shaped) for images in budgets[:-1]}
    stable_end = cooldown_start(largest, shaped)
    for images, point in branch_points.items():
        if not 0 < point <= stable_end:
            raise ConfigError(
                f"sweep {name}: the {images}-image budget would branch at step {point}, outside the stable phase "
                f"(steps 1..{stable_end}) of the {budgets[-1]}-image run; use larger budgets or a smaller decay_fraction"
            )
    main_dir = root / name
    keep = ",".join(str(point) for point in sorted(set(branch_points.values())))
    main = _planned(
        name, "transformer", main_dir,
        [*common, f"schedule.total_steps={largest}", f"logging.checkpoint_steps=[{keep}]", f"name={sweep.name}/{name}", f"run_dir={main_dir}"],
        after, depth, bits, budgets[-1],
    )
    runs = [main]
    for images, point in branch_points.items():
        branch_name = f"{name}/branches/{images}"
        overrides = [
            *common,
            f"schedule.total_steps={steps_for(images, shaped)}",
            f"init_from={main_dir / 'checkpoints' / f'step_{point:08d}'}",
            f"name={sweep.name}/{name}-{images}img",
            f"run_dir={root / branch_name}",
        ]
        runs.append(_planned(branch_name, "branch", root / branch_name, overrides, [name], depth, bits, images))
    return runs


def _planned(name: str, kind: str, run_dir: Path, overrides: list[str], after: list[str], depth: int, bits: int, images: int) -> PlannedRun:
    cfg = _compose(overrides)
    return PlannedRun(name, kind, run_dir, overrides, after, depth, bits, images, describe_config(cfg))
