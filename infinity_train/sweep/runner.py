"""Run a sweep: tokenizers first, then the transformer runs, then their cooldown branches, each as
its own ``python -m infinity_train.train`` process (``sweep.parallel_runs`` at a time), then the
analysis report. With ``cluster.kind=slurm`` every run is a Slurm job instead (``infinity-launch slurm
--wait``: its own sbatch script, snapshot, preemption signal and requeue), submitted as the stages allow.

Restartable: a run whose ``summary.json`` says complete is skipped, a partial one resumes from its
newest checkpoint (the training command's ``resume=auto``). A failed run is reported and the runs
that depend on it are not started; the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infinity_train.config.schema import ClusterKind, DataSource
from infinity_train.distributed import World
from infinity_train.sweep.plan import PlannedRun, SweepPlan

log = logging.getLogger(__name__)

STAGES = ("tokenizer", "transformer", "branch")


@dataclass
class RunOutcome:
    run: PlannedRun
    status: str  # complete | skipped (already complete) | failed | blocked (a dependency failed)
    seconds: float = 0.0
    returncode: int | None = None


def is_complete(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "complete"


def final_metrics(run_dir: Path) -> dict:
    summary = run_dir / "summary.json"
    return json.loads(summary.read_text()).get("final", {}) if summary.is_file() else {}


def sweep_log_path(plan: SweepPlan, run: PlannedRun) -> Path:
    return plan.root / "logs" / (run.name.replace("/", "__") + ".log")


def run_command(run: PlannedRun, on_slurm: bool) -> list[str]:
    if on_slurm:
        return [sys.executable, "-m", "launch.cli", "slurm", "--wait", "--", *run.overrides]
    return [sys.executable, "-m", "infinity_train.train", *run.overrides]


def _describe(run: PlannedRun) -> str:
    metrics = final_metrics(run.run_dir)
    if run.kind == "tokenizer":
        return f"val PSNR {metrics.get('val/psnr', float('nan')):.2f} dB"
    return f"val loss {metrics.get('val/loss', float('nan')):.4f}, {metrics.get('val/bits_per_image', float('nan')):.1f} bits/image"


class SweepRunner:
    def __init__(self, plan: SweepPlan) -> None:
        self.plan = plan
        self.outcomes: dict[str, RunOutcome] = {}
        self.parallel = plan.config.sweep.parallel_runs
        self.on_slurm = plan.config.cluster.kind == ClusterKind.slurm
        cores = os.cpu_count() or 1
        self.threads = str(max(1, cores // self.parallel))

    def run(self) -> list[RunOutcome]:
        self._prepare_data()
        todo = [run for run in self.plan.runs if run.kind in STAGES]
        total = len(todo)
        for stage in STAGES:
            runs = [run for run in todo if run.kind == stage]
            self._run_stage(runs, total)
        return list(self.outcomes.values())

    def _prepare_data(self) -> None:
        """Write the synthetic shards once, before several runs could race to write them."""
        data = self.plan.config.data
        if data.source == DataSource.synthetic:
            from infinity_train.train.data import prepare_synthetic

            prepare_synthetic(data, World(0, 0, 1, 1, 0, 1, "127.0.0.1", 0, "single"))

    def _run_stage(self, runs: list[PlannedRun], total: int) -> None:
        waiting = list(runs)
        active: list[tuple[PlannedRun, subprocess.Popen, float, object]] = []
        while waiting or active:
            while waiting and len(active) < self.parallel:
                run = waiting.pop(0)
                if is_complete(run.run_dir):
                    self._done(RunOutcome(run, "skipped"), total)
                    continue
                failed = [dep for dep in run.after if self.outcomes.get(dep) and self.outcomes[dep].status in ("failed", "blocked")]
                if failed:
                    self._done(RunOutcome(run, "blocked"), total)
                    continue
                active.append(self._start(run))
            still = []
            for run, process, started, handle in active:
                if process.poll() is None:
                    still.append((run, process, started, handle))
                    continue
                handle.close()  # type: ignore[attr-defined]
                ok = process.returncode == 0 and is_complete(run.run_dir)
                self._done(RunOutcome(run, "complete" if ok else "failed", time.monotonic() - started, process.returncode), total)
            active = still
            if active:
                time.sleep(0.2)

    def _start(self, run: PlannedRun) -> tuple[PlannedRun, subprocess.Popen, float, object]:
        path = sweep_log_path(self.plan, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        env = dict(os.environ, OMP_NUM_THREADS=self.threads, PYTHONFAULTHANDLER="1")
        log.info("starting %s (%s)", run.name, "resuming" if (run.run_dir / "checkpoints").is_dir() else "new")
        process = subprocess.Popen(run_command(run, self.on_slurm), stdout=handle, stderr=subprocess.STDOUT, env=env)
        return run, process, time.monotonic(), handle

    def _done(self, outcome: RunOutcome, total: int) -> None:
        self.outcomes[outcome.run.name] = outcome
        position = f"[{len(self.outcomes)}/{total}]"
        run = outcome.run
        if outcome.status == "complete":
            log.info("%s %s finished in %.0f s: %s", position, run.name, outcome.seconds, _describe(run))
        elif outcome.status == "skipped":
            log.info("%s %s already complete: %s", position, run.name, _describe(run))
        elif outcome.status == "blocked":
            log.error("%s %s not started: a run it depends on failed", position, run.name)
        else:
            log.error("%s %s failed (exit status %s); its log: %s", position, run.name, outcome.returncode, sweep_log_path(self.plan, run))
