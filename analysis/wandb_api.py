"""The results index from runs on a wandb server, through ``wandb.Api()`` (needs the network and a login).

Not used by ``collect`` or ``report``, which read run directories; the tests never call it.
A run counts as complete when wandb reports it ``finished``; its final validation metrics are the
last logged ``val/*`` values of its summary. Parameter counts appear only if the trainer logged
``params_total`` / ``params_non_embedding`` to wandb.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.metrics_jsonl import Record
from analysis.results import results_table
from analysis.run_dirs import RunData
from analysis.run_errors import RunDataError

_SUMMARY_KEYS = ("params_total", "params_non_embedding", "depth", "width", "bits")


def fetch_wandb_results(path: str, *, with_history: bool = False) -> pd.DataFrame:
    """One row per run of ``path`` ("entity/project"); ``with_history`` downloads every logged step."""
    import wandb

    runs = [run_data_from_wandb(run, with_history) for run in wandb.Api().runs(path)]
    if not runs:
        raise RunDataError(f"no wandb runs found at {path}")
    return results_table(runs)


def run_data_from_wandb(run: Any, with_history: bool = False) -> RunData:
    """A ``wandb.apis.public.Run`` as the RunData a run directory would give."""
    summary = dict(run.summary_metrics)
    last = _record(summary)
    records = [_record(row) for row in run.scan_history()] if with_history else [last]
    trainer_summary = {"status": "complete" if run.state == "finished" else str(run.state), "step": last["step"]}
    trainer_summary |= {key: summary[key] for key in _SUMMARY_KEYS if key in summary}
    if run.state == "finished":
        trainer_summary["final"] = {k: v for k, v in last.items() if k.startswith("val/")}
    return RunData(
        name=f"{run.entity}/{run.project}/{run.id}",
        path=None,
        config=dict(run.config),
        identity={"name": run.name, "wandb_id": run.id},
        records=records,
        summary=trainer_summary,
        metrics_source="wandb api",
    )


def _record(values: dict[str, Any]) -> Record:
    record: Record = {"step": int(values.get("_step", 0))}
    if "_timestamp" in values:
        record["time"] = values["_timestamp"]
    return record | {k: v for k, v in values.items() if not k.startswith("_")}
