"""The results index: one row per run and per budget branch, as a table and as CSV.

Values come from ``summary.json`` when the run completed, otherwise from the last records of
its metrics (validation metrics from the last record holding ``val/loss``). Missing values are
NaN. The CSV also carries the columns ``infinity-analyze fit`` reads by default (see
:data:`FIT_COLUMNS`), so ``infinity-analyze fit --csv results.csv --form powerlaw`` works as is.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.metrics_jsonl import Record, decode_number
from analysis.run_dirs import RunData, load_runs
from analysis.run_errors import RunDataError
from analysis.vocab import bits_per_image
from infinity_train import geometry
from infinity_train.geometry import bits_per_token
from infinity_train.sizing import family_shape

VAL_COLUMNS = {
    "val_loss": "val/loss",
    "ce_per_bit": "val/ce_per_bit",
    "bits_per_token": "val/bits_per_token",
    "bits_per_image": "val/bits_per_image",
    "bits_per_pixel": "val/bits_per_pixel",
    "bit_accuracy": "val/bit_accuracy",
    "token_accuracy": "val/token_accuracy",
    "checker_score": "val/checker_score",
    "psnr": "val/psnr",
    "ssim": "val/ssim",
    "psnr_predicted": "val/psnr_predicted",
    "mse_predicted": "val/mse_predicted",
    "psnr_expected": "val/psnr_expected",
    "mse_expected": "val/mse_expected",
    "psnr_tokenizer": "val/psnr_tokenizer",
}
D_INDEPENDENT = "mse_expected"
"""The d-independent quality measure the vocabulary analysis ranks and fits d by: mean squared pixel error
(in [-1, 1] units) of the held-out images decoded from the model's teacher-forced *expected* codes
(2 p - 1) / sqrt(d) per bit, i.e. the posterior-mean latent (``val/mse_expected``; ``psnr_expected`` is
the same error as PSNR). Its latent error is a Brier-type proper score of the bit probabilities; the
argmax decode (``mse_predicted``) is shown beside it but moves less smoothly with model size (a more
accurate model can flip a few high-magnitude coarse-scale signs the wrong way)."""
QUALITY_PSNR = "psnr_expected"
PROGRESS_COLUMNS = {"images_seen": "progress/images_seen", "tokens_seen": "progress/tokens_seen", "train_flops": "progress/train_flops"}
COLUMNS = (
    "run", "parent", "task", "status", "seed", "tokenizer_kind", "tokenizer_source", "depth", "width", "d", "token_bits", "params_total", "params_non_embedding",
    "train_flops", "images_seen", "tokens_seen", "budget_images", "step", *VAL_COLUMNS, "wall_time_s", "metrics_source",
)  # fmt: skip
FIT_COLUMNS = {"params": "params_non_embedding", "tokens": "tokens_seen", "loss": "val_loss", "flops": "train_flops", "bits": "d"}
"""Fit-CLI role -> the index column it copies (choose another with e.g. ``--params-col params_total``)."""
COMPLETE = "complete"
TEXT_COLUMNS = ("run", "parent", "task", "status", "tokenizer_kind", "tokenizer_source", "metrics_source")


def collect_results(runs_dir: str | Path) -> pd.DataFrame:
    """The index of every run under ``runs_dir``."""
    return results_table(load_runs(runs_dir))


def results_table(runs: list[RunData]) -> pd.DataFrame:
    """The index; ``table.attrs["notes"]`` holds one line per damaged or diverged run (named), which stays in the
    index with status "damaged" / "diverged" and is left out of fits."""
    rows, notes = [], []
    for run in runs:
        row = run_row(run)
        rows.append(row)
        if row.pop("_note", None):
            notes.append(row_note(run.name, row, run))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for role, column in FIT_COLUMNS.items():
        table[role] = table[column]
    table.attrs["notes"] = notes
    return table


DAMAGED, DIVERGED = "damaged", "diverged"


def row_note(name: str, row: dict[str, Any], run: RunData) -> str:
    if row["status"] == DAMAGED:
        return f"run {name}: summary.json is damaged ({'; '.join(run.summary_problems)}); listed as damaged, left out of fits"
    return f"run {name}: diverged (final val_loss is {row['val_loss']}); listed as diverged, left out of fits"


def run_row(run: RunData) -> dict[str, Any]:
    config, summary = run.config, run.summary or {}
    damaged = bool(run.summary_problems)  # its wrong-typed values were dropped when it was read
    task = str(_get(config, "task") or summary.get("task") or "transformer")
    last_val = last_record_with(run.records, "val/loss")
    final = {**last_val, **_decoded(summary.get("final") or {})}
    last_train = last_record_with(run.records, "progress/images_seen")
    depth = _first_number(summary.get("depth"), _get(config, "model", "depth") if task == "transformer" else None)
    width = _first_number(summary.get("width"), _get(config, "model", "width") if task == "transformer" else None)
    if math.isnan(width) and not math.isnan(depth) and task == "transformer":
        width = float(family_shape(int(depth))[0])
    row: dict[str, Any] = {
        "run": run.name,
        "parent": run.parent or "",
        "task": task,
        "status": str(summary.get("status", "partial")) if run.summary is not None else "partial",
        "seed": _first_number(_get(config, "seed"), 0),
        "tokenizer_kind": str(summary.get("kind") or _get(config, "tokenizer", "kind") or "bsq"),
        "tokenizer_source": _tokenizer_source(task, summary, config),
        "depth": depth,
        "width": width,
        "d": _first_number(summary.get("d"), _get(config, "tokenizer", "d")),
        "token_bits": _first_number(summary.get("token_bits"), _token_bits_from_config(config)),
        "params_total": _first_number(summary.get("params_total")),
        "params_non_embedding": _first_number(summary.get("params_non_embedding")),
        "budget_images": _first_number(run.branch_images, _planned_images(config)),
        "step": _first_number(summary.get("step"), run.records[-1]["step"] if run.records else None),
        "wall_time_s": _first_number(summary.get("wall_time_s"), _elapsed(run.records)),
        "metrics_source": run.metrics_source,
    }
    for column, key in PROGRESS_COLUMNS.items():
        row[column] = _first_number(summary.get(column), last_train.get(key))
    for column, key in VAL_COLUMNS.items():
        row[column] = _first_number(final.get(key), final.get(key.removeprefix("val/")))
    if math.isnan(row["bits_per_image"]):
        row["bits_per_image"] = _bits_per_image_from_ce(row["ce_per_bit"], row["token_bits"], config)
    if damaged:
        row["status"], row["_note"] = DAMAGED, True
    elif row["status"] == COMPLETE and task == "transformer" and not np.isfinite(row["val_loss"]) and (last_val or final):
        row["status"], row["_note"] = DIVERGED, True
    return row


def _token_bits_from_config(config: dict[str, Any]) -> float | None:
    """Bits per token of a run whose summary predates ``token_bits``: d, or 4d under patchify."""
    d = _get(config, "tokenizer", "d")
    if not isinstance(d, int):
        return None
    return float(bits_per_token(d, bool(_get(config, "tokenizer", "patchify"))))


def _tokenizer_source(task: str, summary: dict[str, Any], config: dict[str, Any]) -> str:
    """Where the tokenizer came from: a tokenizer run says how it was made; a transformer run names its file."""
    if task == "tokenizer":
        steps = summary.get("step")
        return str(summary.get("source") or (f"trained in this run ({steps} steps)" if steps is not None else "trained in this run"))
    return str(_get(config, "tokenizer", "checkpoint") or "")


def last_record_with(records: list[Record], key: str) -> Record:
    """The last record holding ``key`` ({} if none)."""
    return next((r for r in reversed(records) if key in r), {})


def write_results_csv(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    if not path.resolve().parent.is_dir():
        raise RunDataError(f"cannot write {path}: its folder does not exist")
    table.to_csv(path, index=False)  # shortest round-trip repr: FLOP and parameter counts stay exact
    return path


def fit_rows(table: pd.DataFrame, needed: tuple[str, ...], *, include_partial: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Rows usable for a fit on ``needed`` columns, and one note per excluded row saying why."""
    keep = np.ones(len(table), dtype=bool)
    notes = []
    for i, row in enumerate(table.itertuples(index=False)):
        reason = _exclusion(row._asdict(), needed, include_partial)
        if reason:
            keep[i] = False
            notes.append(f"{row.run}: {reason}")
    return table[keep], notes


def _exclusion(row: dict[str, Any], needed: tuple[str, ...], include_partial: bool) -> str:
    if row["task"] != "transformer":
        return f"a {row['task']} run"
    if row["status"] != COMPLETE and not include_partial:
        return f"{row['status']} (not complete)"
    if np.isfinite(row.get("seed", 0)) and row.get("seed", 0) > 0:
        return f"a seed replicate (seed {row['seed']:g}): shown in the seed spread, not fitted"
    bad = [c for c in needed if not (np.isfinite(row[c]) and row[c] > 0)]
    return f"{', '.join(bad)} missing or not finite" if bad else ""


def format_table(table: pd.DataFrame, columns: tuple[str, ...] | None = None) -> str:
    """A plain-text view of the index (numbers to 4 significant digits, '-' for missing)."""
    columns = columns or (
        "run", "status", "depth", "d", "params_non_embedding", "train_flops", "images_seen",
        "val_loss", "bits_per_image", "bit_accuracy",
    )  # fmt: skip
    view = table.loc[:, list(columns)].copy()
    for column in view.columns:
        if column not in TEXT_COLUMNS:
            view[column] = [_format_number(v) for v in view[column]]
    return view.to_string(index=False)


def _format_number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.4g}"


def _get(config: dict[str, Any], *keys: str) -> Any:
    value: Any = config
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _first_number(*values: Any) -> float:
    """The first value that is a non-NaN number (int, float, or "inf" text), as float; NaN if none."""
    for value in values:
        value = decode_number(value)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float, np.number)):
            number = float(value)
            if not math.isnan(number):
                return number
    return math.nan


def _decoded(values: dict[str, Any]) -> dict[str, Any]:
    return {key: decode_number(value) for key, value in values.items()}


def _planned_images(config: dict[str, Any]) -> float:
    steps, batch = _get(config, "schedule", "total_steps"), _get(config, "data", "global_batch_size")
    return _first_number(steps * batch if isinstance(steps, int) and isinstance(batch, int) else None)


def _elapsed(records: list[Record]) -> float | None:
    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
    return float(times[-1] - times[0]) if len(times) >= 2 else None


def _bits_per_image_from_ce(ce_per_bit: float, token_bits: float, config: dict[str, Any]) -> float:
    """Fallback when ``val/bits_per_image`` was not logged: per-bit nats -> bits per image."""
    resolution = _get(config, "data", "resolution")
    if not (np.isfinite(ce_per_bit) and np.isfinite(token_bits) and isinstance(resolution, int)):
        return math.nan
    try:
        tokens = geometry.num_tokens(geometry.scale_schedule(resolution))
    except ValueError:
        return math.nan
    return float(bits_per_image(ce_per_bit, token_bits, tokens))
