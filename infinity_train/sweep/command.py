"""``infinity-train sweep [--plan] [overrides]``: plan, run, fit and report a scaling sweep."""

from __future__ import annotations

import json
import logging
import sys
import time

from infinity_train import exit_codes
from infinity_train.console import setup_logging
from infinity_train.sweep.plan import plan_sweep
from infinity_train.sweep.runner import SweepRunner

log = logging.getLogger("infinity_train.sweep")


def run_sweep_command(args: list[str]) -> int:
    show_plan = "--plan" in args
    overrides = [a for a in args if a != "--plan"]
    plan = plan_sweep(overrides)
    if show_plan:
        for run in plan.runs:
            print(json.dumps({"name": run.name, "kind": run.kind, "run_dir": str(run.run_dir), "after": run.after, "overrides": run.overrides}))
        return exit_codes.OK
    setup_logging(plan.root / "logs", rank=0)
    started = time.monotonic()
    stages = {kind: len(plan.stage(kind)) for kind in ("tokenizer", "transformer", "branch")}
    log.info("sweep %s in %s: %d tokenizers, %d runs, %d cooldown branches", plan.config.sweep.name, plan.root, *stages.values())
    outcomes = SweepRunner(plan).run()
    failed = [o.run.name for o in outcomes if o.status in ("failed", "blocked")]

    from analysis.scaling_report import write_report

    try:
        report = write_report(plan.root, plan.root / "report")
    except Exception as error:  # noqa: BLE001 - the runs stay usable; say why the report is missing
        log.error("no report: %s", error)
        return exit_codes.FAILURE
    minutes = (time.monotonic() - started) / 60
    print(f"report: {report.path}")
    print(f"headline: {report.headline}")
    for line in report.fits.get("main_figures", ()):  # the study's figures, each naming its measure
        print(f"  {line}")
    print(f"sweep wall time: {minutes:.1f} min")
    if failed:
        print(f"error: {len(failed)} run(s) did not finish: {', '.join(failed)}", file=sys.stderr)
        return exit_codes.FAILURE
    return exit_codes.OK
