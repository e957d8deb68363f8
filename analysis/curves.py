"""Per-run series read from metrics records: validation loss against training compute, and bit accuracy per scale."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from analysis.results import last_record_with
from analysis.run_dirs import RunData

_SCALE_KEY = re.compile(r"^val/bit_accuracy_scale/(\d+)$")


@dataclass(frozen=True)
class Curve:
    step: np.ndarray
    flops: np.ndarray
    loss: np.ndarray


def val_curve(run: RunData, key: str = "val/loss") -> Curve:
    """``key`` at every validation record, against the training FLOPs reached at that step.

    A record without ``progress/train_flops`` takes it interpolated (in step) from the records
    that have it; NaN when no record has it.
    """
    val = [r for r in run.records if key in r]
    step = np.array([r["step"] for r in val], dtype=float)
    loss = np.array([_number(r[key]) for r in val])
    known = [(r["step"], _number(r["progress/train_flops"])) for r in run.records if "progress/train_flops" in r]
    known = [(s, f) for s, f in known if np.isfinite(f)]
    if known:
        known_steps, known_flops = np.array(known, dtype=float).T
        flops = np.interp(step, known_steps, known_flops)
        own = [_number(r.get("progress/train_flops", np.nan)) for r in val]
        flops = np.where(np.isfinite(own), own, flops)
    else:
        flops = np.full(step.shape, np.nan)
    return Curve(step, flops, loss)


def scale_accuracy(run: RunData) -> np.ndarray:
    """``val/bit_accuracy_scale/<k>`` for k = 0, 1, ... from the final metrics (NaN where missing)."""
    final = dict(last_record_with(run.records, "val/loss"))
    final |= (run.summary or {}).get("final") or {}
    by_scale = {int(m.group(1)): _number(v) for k, v in final.items() if (m := _SCALE_KEY.match(k))}
    if not by_scale:
        return np.array([])
    values = np.full(max(by_scale) + 1, np.nan)
    for k, v in by_scale.items():
        values[k] = v
    return values


def _number(value: object) -> float:
    if isinstance(value, str):
        value = value.strip().lower()
    try:
        return float(value)  # type: ignore[arg-type]  # "nan" and "inf" parse too
    except (TypeError, ValueError):
        return float("nan")
