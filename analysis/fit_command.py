"""The `fit` command: read runs, pick columns for the form, fit (per d when there is a bits column), report."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis import report
from analysis.chinchilla import ChinchillaFit, fit_chinchilla
from analysis.isoflop import IsoFlopFit, TokensFrom, fit_isoflop, group_budgets
from analysis.powerlaw import PowerLawFit, fit_power_law
from analysis.runs_csv import read_table, select_columns
from analysis.validation import FitInputError
from analysis.results import D_INDEPENDENT
from analysis.vocab import best_bits, bits_per_image, compute_optimal_bits, fit_per_bits, fit_vocab

Form = Literal["chinchilla", "powerlaw", "isoflop", "vocab"]
XAxis = Literal["params", "tokens", "flops"]
DEFAULT_COLUMNS = {"params": "params", "tokens": "tokens", "loss": "loss", "flops": "flops", "bits": "bits"}
_SUMMARY_POINTS = 5


@dataclass(frozen=True)
class FitRequest:
    csv: str
    form: Form
    x: XAxis = "params"
    columns: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    named_columns: frozenset[str] = frozenset()
    """Roles whose column the user named explicitly: those columns must exist."""
    n_bootstrap: int = 100
    seed: int = 0
    holdout: int = 0
    ci: float = 0.95
    tolerance: float = 0.1
    tokens_from: TokensFrom = "6nd"
    tokens_per_image: float | None = None
    pool_bits: bool = False
    include_partial: bool = False
    """Keep rows whose ``status`` column (written by ``collect``) is not "complete"."""


@dataclass(frozen=True)
class FitOutcome:
    text: str
    record: dict[str, Any]


def run_fit(request: FitRequest) -> FitOutcome:
    clock = time.perf_counter()
    check_request(request)
    data, dropped = _load(request)
    loss_unit = "as given"
    if request.tokens_per_image is not None:
        data["loss"] = bits_per_image(data["loss"], data["bits"], request.tokens_per_image)
        loss_unit = f"bits per image (per-bit nats / ln 2 x d x {request.tokens_per_image:g} tokens)"

    if request.form == "vocab":
        if request.tokens_per_image is None and "loss" not in request.named_columns and data.get("loss_column") == D_INDEPENDENT:
            loss_unit = f"{D_INDEPENDENT}: pixel MSE of images decoded from the teacher-forced expected codes (d-independent)"
        data.pop("loss_column", None)
        fit = fit_vocab(data["params"], data["bits"], data["loss"], **_fit_options(request))
        outcome = _vocab_outcome(fit, data, loss_unit)
        return FitOutcome(_with_dropped(outcome.text, dropped), outcome.record | {"rows_dropped": dropped})

    fit_rows = _fitter(request, data)
    x_name = _x_name(request, data)
    if "bits" not in data or request.pool_bits or np.unique(data["bits"]).size == 1:
        fit = fit_rows(np.ones(data["loss"].size, dtype=bool))
        record = report.to_dict(fit, x_name=x_name) | {"loss_unit": loss_unit, "rows_dropped": dropped}
        return FitOutcome(_with_dropped(report.render(fit, x_name=x_name), dropped), record)

    fits = fit_per_bits(data["bits"], fit_rows)
    summary_text, summary = _best_bits_summary(request, data, fits)
    blocks = [f"=== bits = {d:g} ({_count(data['bits'] == d)} runs) ===\n{report.render(f, x_name=x_name)}" for d, f in fits.items()]
    if loss_unit == "as given":
        summary_text += "\nnote: losses compared across d as given; use --tokens-per-image to convert per-bit nats to bits per image"
    record = {
        "form": request.form,
        "loss_unit": loss_unit,
        "by_bits": {f"{d:g}": report.to_dict(f, x_name=x_name) for d, f in fits.items()},
        "best_bits": summary,
        "n_points": int(data["loss"].size),
        "rows_dropped": dropped,
        "seconds": time.perf_counter() - clock,
    }
    return FitOutcome(_with_dropped("\n\n".join([*blocks, summary_text]), dropped), record)


def _with_dropped(text: str, dropped: list[str]) -> str:
    if not dropped:
        return text
    return text + f"\nleft out {len(dropped)} row{'s' if len(dropped) > 1 else ''}: " + "; ".join(dropped)


def _count(mask: np.ndarray) -> int:
    return int(np.sum(mask))


def _fit_options(request: FitRequest) -> dict[str, Any]:
    return {"n_bootstrap": request.n_bootstrap, "seed": request.seed, "ci": request.ci, "holdout_largest": request.holdout}


def vocab_loss_column(request: FitRequest, table: pd.DataFrame) -> str | None:
    """``--form vocab`` ranks vocabularies in a d-independent measure: without --loss-col it fits the
    results index's ``mse_expected`` (pixel error of images decoded from the model's teacher-forced expected codes)."""
    if request.form == "vocab" and "loss" not in request.named_columns and request.tokens_per_image is None and D_INDEPENDENT in table.columns:
        return D_INDEPENDENT
    return None


def _load(request: FitRequest) -> tuple[dict[str, np.ndarray], list[str]]:
    """The columns the form needs, and a note per row left out (not complete, not a transformer run, a seed replicate)."""
    table, dropped = _runs_to_fit(read_table(request.csv), request.include_partial)
    names = dict(request.columns)
    if column := vocab_loss_column(request, table):
        names["loss"] = column
    present = {role for role, name in names.items() if name in table.columns}
    needed: set[str] = {"loss"}
    optional: set[str] = set() if request.pool_bits else {"bits"}
    if request.form == "chinchilla":
        needed |= {"params", "tokens"}
        optional |= {"flops"}
    elif request.form == "vocab":
        needed |= {"params", "bits"}
    elif request.form == "powerlaw":
        if request.x == "flops" and ("flops" in present or "flops" in request.named_columns):
            needed |= {"flops"}
        elif request.x == "flops":
            needed |= {"params", "tokens"}  # C = 6ND
        else:
            needed |= {request.x}
    else:  # isoflop
        needed |= {"params"}
        has_flops = "flops" in present or "flops" in request.named_columns
        needed |= {"flops"} if has_flops else {"tokens"}
        if request.tokens_from == "parabola":
            needed |= {"tokens"}
        optional |= {"tokens"}
    if request.tokens_per_image is not None:
        needed |= {"bits"}
    needed |= request.named_columns & optional
    required = {role: names[role] for role in sorted(needed, key=list(DEFAULT_COLUMNS).index)}
    optional_columns = {role: names[role] for role in optional - needed}
    data = select_columns(table, request.csv, required, optional_columns)
    if request.form == "vocab":
        data["loss_column"] = names["loss"]  # type: ignore[assignment]
    return data, dropped


def _runs_to_fit(table: pd.DataFrame, include_partial: bool) -> tuple[pd.DataFrame, list[str]]:
    """Rows of a results index (``status`` and ``task`` columns, when present) that belong in a fit.

    The index labels are kept, so messages about bad values still name the CSV's data rows.
    """
    keep = pd.Series(True, index=table.index)
    reasons = pd.Series("", index=table.index)
    if "task" in table.columns:
        other = table["task"].astype(str).str.strip() != "transformer"
        keep &= ~other
        reasons[other] = "a " + table["task"].astype(str)[other] + " run"
    if "status" in table.columns and not include_partial:
        unfinished = keep & (table["status"].astype(str).str.strip() != "complete")
        keep &= ~unfinished
        reasons[unfinished] = table["status"].astype(str)[unfinished] + " (use --include-partial to keep it)"
    if "seed" in table.columns:
        seeds = pd.to_numeric(table["seed"], errors="coerce").fillna(0)
        replicate = keep & (seeds > 0)
        keep &= ~replicate
        reasons[replicate] = "a seed replicate (seed " + seeds[replicate].astype(int).astype(str) + "), for the spread only"

    def name(label: int) -> str:
        return str(table.at[label, "run"]) if "run" in table.columns else f"data row {label + 1}"

    dropped = [f"{name(label)}: {reasons[label]}" for label in table.index[~keep]]
    if not keep.any():
        raise FitInputError(f"no rows left to fit in the CSV: {'; '.join(dropped[:3])}{' ...' if len(dropped) > 3 else ''}")
    return table[keep], dropped


def _x_name(request: FitRequest, data: dict[str, np.ndarray]) -> str | None:
    if request.form != "powerlaw":
        return None
    if request.x == "flops" and "flops" not in data:
        return "flops = 6 N D"
    return request.x


def _fitter(request: FitRequest, data: dict[str, np.ndarray]) -> Callable[[np.ndarray], Any]:
    """A function fitting the request's form to the rows selected by a boolean mask."""
    options = _fit_options(request)

    def column(role: str, rows: np.ndarray) -> np.ndarray | None:
        return data[role][rows] if role in data else None

    if request.form == "chinchilla":
        return lambda rows: fit_chinchilla(
            data["params"][rows], data["tokens"][rows], data["loss"][rows], compute=column("flops", rows), **options
        )
    if request.form == "powerlaw":
        x = data[request.x] if request.x in data else 6.0 * data["params"] * data["tokens"]
        return lambda rows: fit_power_law(x[rows], data["loss"][rows], **options)
    return lambda rows: fit_isoflop(
        data["params"][rows],
        data["loss"][rows],
        tokens=column("tokens", rows),
        flops=column("flops", rows),
        tolerance=request.tolerance,
        tokens_from=request.tokens_from,
        **options,
    )


def _best_bits_summary(request: FitRequest, data: dict[str, np.ndarray], fits: dict[float, Any]) -> tuple[str, dict[str, Any]]:
    """Which d predicts the lowest loss, at points spanning the observed range."""
    if request.form == "isoflop":
        return _best_bits_isoflop(request, fits)
    if request.form == "chinchilla":
        compute = data["flops"] if "flops" in data else 6.0 * data["params"] * data["tokens"]
        at_name, points = "compute", _span(compute)

        def predicted(fit: ChinchillaFit) -> np.ndarray:
            return fit.predict(*fit.compute_optimal(points))

        heading = "compute-optimal loss at compute C (N, D allocated by each d's own law)"
    else:
        x = data[request.x] if request.x in data else 6.0 * data["params"] * data["tokens"]
        at_name, points = _x_name(request, data) or "x", _span(x)

        def predicted(fit: PowerLawFit) -> np.ndarray:
            return fit.predict(points)

        heading = f"predicted loss at {at_name}"
    losses = {d: predicted(f) for d, f in fits.items()}
    winners = compute_optimal_bits(fits, points) if request.form == "chinchilla" else best_bits(fits, predicted)
    return _best_bits_table(heading, at_name, points, losses, winners)


def _best_bits_isoflop(request: FitRequest, fits: dict[float, IsoFlopFit]) -> tuple[str, dict[str, Any]]:
    entries = [(d, b.compute, b.loss_opt) for d, f in fits.items() for b in f.budgets]
    labels = group_budgets(np.array([c for _, c, _ in entries]), request.tolerance)
    points, losses_by_point = [], []
    for label in np.unique(labels):
        members = [entries[i] for i in np.flatnonzero(labels == label)]
        points.append(float(np.exp(np.mean(np.log([c for _, c, _ in members])))))
        losses_by_point.append({d: loss for d, _, loss in members})
    options = list(fits)
    losses = {d: np.array([row.get(d, np.nan) for row in losses_by_point]) for d in options}
    stacked = np.stack([losses[d] for d in options])
    # A budget only one d reached decides nothing.
    winners = np.array([options[int(np.nanargmin(col))] if np.isfinite(col).sum() >= 2 else np.nan for col in stacked.T])
    heading = "parabola-minimum loss per compute budget (budgets matched across d)"
    return _best_bits_table(heading, "compute", np.array(points), losses, winners)


def _best_bits_table(
    heading: str, at_name: str, points: np.ndarray, losses: dict[float, np.ndarray], winners: np.ndarray
) -> tuple[str, dict[str, Any]]:
    options = list(losses)
    lines = [f"Best d: {heading}", "  " + f"{at_name:>12}" + "".join(f"{f'd={d:g}':>12}" for d in options) + f"{'best d':>9}"]
    rows = []
    for i, point in enumerate(points):
        values = [float(losses[d][i]) for d in options]
        lines.append(
            "  " + f"{point:12.4g}" + "".join(f"{v:12.5g}" for v in values) + f"{_fmt_bits(winners[i]):>9}"
        )
        rows.append(
            {
                at_name: float(point),
                "loss_by_bits": {f"{d:g}": report.json_number(v) for d, v in zip(options, values)},
                "best_bits": report.json_number(winners[i]),
            }
        )
    return "\n".join(lines), {"at": at_name, "points": rows}


def _fmt_bits(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:g}"


def _span(values: np.ndarray) -> np.ndarray:
    return np.geomspace(values.min(), values.max(), _SUMMARY_POINTS)


def _vocab_outcome(fit: Any, data: dict[str, np.ndarray], loss_unit: str) -> FitOutcome:
    sizes = np.unique(data["params"])
    best = fit.optimal_bits(sizes)
    continuous = fit.continuous_optimal_bits(sizes)
    lines = [report.render(fit), "", "Optimal d at each observed N", f"  {'N':>12}  {'best observed d':>15}  {'continuous d*':>13}"]
    lines += [f"  {n:12.4g}  {b:15g}  {c:13.4g}" for n, b, c in zip(sizes, best, continuous)]
    record = report.to_dict(fit) | {
        "loss_unit": loss_unit,
        "optimal_bits": [
            {"params": float(n), "best_observed_bits": float(b), "continuous_optimal_bits": report.json_number(c)}
            for n, b, c in zip(sizes, best, continuous)
        ],
    }
    if loss_unit == "as given":
        lines.append("note: fit losses in a d-independent unit; use --tokens-per-image to convert per-bit nats")
    return FitOutcome("\n".join(lines), record)


def check_request(request: FitRequest) -> None:
    """Option combinations that cannot work, reported before reading any data."""
    if request.n_bootstrap < 0:
        raise FitInputError(f"--bootstrap must be >= 0, got {request.n_bootstrap}")
    if request.holdout < 0:
        raise FitInputError(f"--holdout must be >= 0, got {request.holdout}")
    if not 0 < request.ci < 1:
        raise FitInputError(f"--ci must be between 0 and 1, got {request.ci}")
    if request.tolerance <= 0:
        raise FitInputError(f"--tolerance must be > 0, got {request.tolerance}")
    if request.tokens_per_image is not None and request.tokens_per_image <= 0:
        raise FitInputError(f"--tokens-per-image must be > 0, got {request.tokens_per_image}")
