"""The fits of a scaling report, computed from the results index, each one either made or explained.

* loss vs parameters, per d: L = E + A N^-alpha on one point per model size (its largest
  budget), for non-embedding and for total parameters;
* the compute frontier, per d: the same law in training FLOPs over the compute-efficient runs
  (no run with less compute reached a lower loss);
* IsoFLOP (approach 2), per d, when model sizes have runs at several budgets
  (:mod:`analysis.isoflop_profiles`);
* the vocabulary axis in bits per image (d-independent): per-d laws in N, the best d per
  model size (observed and predicted), and the joint L(N, d) when 3+ values of d exist.

Runs that are not complete, not transformer runs, or lack a finite positive value needed by a
fit are left out, each with a note. A fit that cannot be made (too few points) keeps the
reason instead of raising.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import report
from analysis.isoflop import fit_isoflop
from analysis.isoflop_profiles import MIN_BUDGETS_PER_SIZE, MIN_SIZES, Profiles, interpolated_profiles
from analysis.powerlaw import fit_power_law
from analysis.report import Fit
from analysis.results import fit_rows
from analysis.validation import FitInputError
from analysis.vocab import best_bits, fit_vocab


@dataclass(frozen=True)
class FitResult:
    """One fit, or why it was not made, with the points it was given."""

    title: str
    fit: Fit | None
    note: str = ""
    """Why it was not fitted; for a fit, a caveat (or empty)."""
    x_name: str | None = None
    points: pd.DataFrame = field(default_factory=pd.DataFrame)

    def record(self) -> dict[str, Any]:
        if self.fit is None:
            return {"title": self.title, "fitted": False, "reason": self.note, "n_points": len(self.points)}
        caveat = {"note": self.note} if self.note else {}
        return {"title": self.title, "fitted": True} | report.to_dict(self.fit, x_name=self.x_name) | caveat

    def text(self) -> str:
        if self.fit is None:
            return f"{self.title}\nnot fitted: {self.note}"
        caveat = f"\nnote: {self.note}" if self.note else ""
        return f"{self.title}\n{report.render(self.fit, x_name=self.x_name)}{caveat}"


@dataclass(frozen=True)
class ScalingAnalysis:
    loss_vs_params: dict[float, FitResult]
    loss_vs_params_total: dict[float, FitResult]
    frontier: dict[float, FitResult]
    isoflop: dict[float, FitResult]
    isoflop_profiles: dict[float, Profiles]
    bits_per_image_vs_params: dict[float, FitResult]
    best_bits: pd.DataFrame
    vocab: FitResult
    excluded: list[str]
    headline: str

    def fit_results(self) -> dict[str, dict[float, FitResult]]:
        return {
            "loss_vs_params": self.loss_vs_params,
            "loss_vs_params_total": self.loss_vs_params_total,
            "compute_frontier": self.frontier,
            "isoflop": self.isoflop,
            "bits_per_image_vs_params": self.bits_per_image_vs_params,
        }

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headline": self.headline}
        for name, by_bits in self.fit_results().items():
            out[name] = {f"{d:g}": result.record() for d, result in by_bits.items()}
        out["best_bits_by_size"] = self.best_bits.to_dict(orient="records")
        out["vocab"] = self.vocab.record()
        out["excluded_runs"] = list(self.excluded)
        return report.json_safe(out)


def analyze(table: pd.DataFrame, *, n_bootstrap: int = 100, seed: int = 0, include_partial: bool = False) -> ScalingAnalysis:
    rows, excluded = fit_rows(table, ("params_non_embedding", "val_loss", "train_flops", "d"), include_partial=include_partial)
    options = {"n_bootstrap": n_bootstrap, "seed": seed}
    bits_values = [float(d) for d in np.unique(rows["bits"])] if len(rows) else []
    per_bits = {d: rows[rows["bits"] == d] for d in bits_values}
    largest = {d: largest_budget_per_size(group) for d, group in per_bits.items()}

    loss_vs_params = {
        d: _power_law(f"val loss vs non-embedding params, d={d:g}", group, "params_non_embedding", "val_loss", "params", options)
        for d, group in largest.items()
    }
    loss_vs_total = {
        d: _power_law(f"val loss vs total params, d={d:g}", group, "params_total", "val_loss", "params (total)", options)
        for d, group in largest.items()
    }
    frontier = {
        d: _power_law(f"compute frontier: val loss vs train FLOPs, d={d:g}", compute_frontier(group), "train_flops", "val_loss", "flops", options)
        for d, group in per_bits.items()
    }
    profiles = {d: interpolated_profiles(g["params"], g["flops"], g["loss"]) for d, g in per_bits.items()}
    isoflop = {d: _isoflop(d, profiles[d], options) for d in per_bits}

    with_bpi = {d: g[np.isfinite(g["bits_per_image"]) & (g["bits_per_image"] > 0)] for d, g in largest.items()}
    bpi_fits = {
        d: _power_law(f"bits per image vs non-embedding params, d={d:g}", group, "params_non_embedding", "bits_per_image", "params", options)
        for d, group in with_bpi.items()
    }
    return ScalingAnalysis(
        loss_vs_params=loss_vs_params,
        loss_vs_params_total=loss_vs_total,
        frontier=frontier,
        isoflop=isoflop,
        isoflop_profiles=profiles,
        bits_per_image_vs_params=bpi_fits,
        best_bits=best_bits_by_size(with_bpi, bpi_fits),
        vocab=_vocab(pd.concat(with_bpi.values()) if with_bpi else rows.iloc[:0], options),
        excluded=excluded,
        headline=headline(loss_vs_params),
    )


def largest_budget_per_size(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model size (depth): the one trained on the most images (then: lowest loss)."""
    ordered = rows.sort_values(["images_seen", "val_loss"], ascending=[False, True], kind="stable")
    return ordered.drop_duplicates(subset="params_non_embedding", keep="first").sort_values("params_non_embedding")


def compute_frontier(rows: pd.DataFrame) -> pd.DataFrame:
    """Runs that no run with less (or equal) compute beats: the lower envelope of loss against FLOPs."""
    ordered = rows.sort_values(["train_flops", "val_loss"], kind="stable")
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], ordered["val_loss"].to_numpy()[:-1]]))
    return ordered[ordered["val_loss"].to_numpy() < best_before]


def best_bits_by_size(groups: dict[float, pd.DataFrame], fits: dict[float, FitResult]) -> pd.DataFrame:
    """Per model size (depth): bits per image of each d, the observed best d and the one the per-d laws predict."""
    if not groups:
        return pd.DataFrame()
    table = pd.concat(groups.values())
    rows = []
    for depth, at_depth in table.groupby("depth"):
        params = float(np.exp(np.mean(np.log(at_depth["params_non_embedding"]))))
        by_bits = {float(d): float(v) for d, v in zip(at_depth["bits"], at_depth["bits_per_image"])}
        row: dict[str, Any] = {"depth": depth, "params": params}
        row |= {f"bits_per_image_d{d:g}": by_bits.get(d, np.nan) for d in groups}
        row["best_d_observed"] = min(by_bits, key=by_bits.get) if len(by_bits) >= 2 else np.nan
        fitted = {d: r.fit for d, r in fits.items() if r.fit is not None}
        predicted = {d: fit.predict(params) for d, fit in fitted.items()}
        row["best_d_predicted"] = float(best_bits(predicted, lambda loss: loss)) if len(fitted) >= 2 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def headline(loss_vs_params: dict[float, FitResult]) -> str:
    """One line: the val-loss-vs-params law of the d with the most model sizes (ties: the larger d)."""
    if not loss_vs_params:
        return "val loss vs params: not fitted (no complete transformer runs with finite losses)"
    d = max(loss_vs_params, key=lambda b: (len(loss_vs_params[b].points), b))
    result = loss_vs_params[d]
    sizes = f"d={d:g}, {len(result.points)} sizes"
    if result.fit is None:
        return f"val loss vs params ({sizes}): not fitted ({result.note})"
    fit = result.fit
    interval = fit.intervals.get("alpha")
    ci = f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval and np.all(np.isfinite(interval)) else ""
    return (
        f"val loss vs params ({sizes}): L = E + A N^-alpha, alpha = {fit.alpha:.3g}{ci}, "
        f"E = {fit.E:.3g}, A = {fit.A:.3g}, R^2 = {fit.goodness.r2:.4f}"
    )


def _power_law(title: str, rows: pd.DataFrame, x_column: str, loss_column: str, x_name: str, options: dict) -> FitResult:
    points = rows[np.isfinite(rows[x_column]) & (rows[x_column] > 0)]
    return _attempt(
        title, lambda: fit_power_law(points[x_column].to_numpy(), points[loss_column].to_numpy(), **options), x_name, points
    )


def _isoflop(d: float, profiles: Profiles, options: dict) -> FitResult:
    title = f"IsoFLOP (approach 2) from interpolated budget profiles, d={d:g}"
    if profiles.params.size == 0:
        note = (
            f"needs {MIN_SIZES}+ model sizes with runs at {MIN_BUDGETS_PER_SIZE}+ budgets whose compute ranges overlap; "
            f"{profiles.sizes_with_budgets} sizes have several budgets"
        )
        return FitResult(title, None, note)
    points = pd.DataFrame({"params": profiles.params, "loss": profiles.loss, "flops": profiles.compute})
    caveat = "'runs' are interpolated (size, budget) points; D_opt = C / (6 N_opt)"
    if points.groupby("flops").size().min() <= MIN_SIZES:
        # Three points fix a parabola exactly: no residuals for the bootstrap to resample.
        options = options | {"n_bootstrap": 0}
        caveat += f"; no interval: some budgets have only {MIN_SIZES} model sizes, which a parabola fits exactly"
    result = _attempt(
        title, lambda: fit_isoflop(profiles.params, profiles.loss, flops=profiles.compute, tolerance=0.01, **options), None, points
    )
    return result if result.fit is None else FitResult(result.title, result.fit, caveat, None, points)


def _vocab(rows: pd.DataFrame, options: dict) -> FitResult:
    title = "joint vocabulary law in bits per image"
    return _attempt(
        title,
        lambda: fit_vocab(rows["params_non_embedding"].to_numpy(), rows["bits"].to_numpy(), rows["bits_per_image"].to_numpy(), **options),
        None,
        rows,
    )


def _attempt(title: str, make: Callable[[], Fit], x_name: str | None, points: pd.DataFrame) -> FitResult:
    try:
        with np.errstate(all="ignore"):
            return FitResult(title, make(), "", x_name, points)
    except FitInputError as error:
        return FitResult(title, None, str(error), x_name, points)
