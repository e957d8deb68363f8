"""The fits of a scaling report, computed from the results index, each one either made or explained.

* loss vs parameters, per d: L = E + A N^-alpha on one point per model size (its largest
  budget), for non-embedding and for total parameters;
* the compute frontier, per d: the same law in training FLOPs over the compute-efficient runs
  (no run with less compute reached a lower loss);
* IsoFLOP (approach 2), per d, when model sizes have runs at several budgets
  (:mod:`analysis.isoflop_profiles`);
* bits per image (the same unit for every d) against N per d: the law with a floor and the
  log-log line (Pearson r, bootstrap interval of alpha);
* the vocabulary axis in the d-independent generation measure (:data:`analysis.results.D_INDEPENDENT`,
  the pixel error of images decoded from the model's own teacher-forced argmax bits): the best d per
  model size (observed, and predicted by the joint law) and the joint L(N, d) when 3+ values of d exist;
* the seed-to-seed spread of the runs of the smallest size (seed replicates are never fitted).

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
from analysis.loglog import LogLogFit, fit_loglog
from analysis.results import D_INDEPENDENT, QUALITY_PSNR, fit_rows
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
    bits_per_image_loglog: dict[float, LogLogFit | str] = field(default_factory=dict)
    """Per d: the log-log line of bits per image against N, or why it was not fitted."""
    seed_spread: pd.DataFrame = field(default_factory=pd.DataFrame)
    quality_vs_params: dict[float, FitResult] = field(default_factory=dict)
    """Per d: the power law of the d-independent measure against N."""

    def fit_results(self) -> dict[str, dict[float, FitResult]]:
        return {
            "loss_vs_params": self.loss_vs_params,
            "loss_vs_params_total": self.loss_vs_params_total,
            "compute_frontier": self.frontier,
            "isoflop": self.isoflop,
            "bits_per_image_vs_params": self.bits_per_image_vs_params,
            "quality_vs_params": self.quality_vs_params,
        }

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headline": self.headline}
        for name, by_bits in self.fit_results().items():
            out[name] = {f"{d:g}": result.record() for d, result in by_bits.items()}
        out["best_bits_by_size"] = self.best_bits.to_dict(orient="records")
        out["best_bits_measure"] = f"{D_INDEPENDENT} (lower is better; {QUALITY_PSNR} and the argmax decode's psnr_predicted shown beside it)"
        out["bits_per_image_loglog"] = {
            f"{d:g}": (fit.record() if isinstance(fit, LogLogFit) else {"fitted": False, "reason": fit}) for d, fit in self.bits_per_image_loglog.items()
        }
        out["seed_spread"] = self.seed_spread.to_dict(orient="records")
        out["vocab"] = self.vocab.record()
        out["excluded_runs"] = list(self.excluded)
        return report.json_safe(out)


def analyze(table: pd.DataFrame, *, n_bootstrap: int = 100, seed: int = 0, include_partial: bool = False) -> ScalingAnalysis:
    for column in ("seed", D_INDEPENDENT, QUALITY_PSNR, "psnr_predicted"):
        if column not in table.columns:
            table = table.assign(**{column: 0.0 if column == "seed" else np.nan})
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
    loglog = {d: _loglog(group, options) for d, group in with_bpi.items()}
    with_quality = {d: g[np.isfinite(g[D_INDEPENDENT]) & (g[D_INDEPENDENT] > 0)] for d, g in largest.items()}
    quality_rows = pd.concat(with_quality.values()) if with_quality else rows.iloc[:0]
    vocab = _vocab(quality_rows, options)
    quality_fits = {
        d: _power_law(f"{D_INDEPENDENT} (d-independent) vs non-embedding params, d={d:g}", group, "params_non_embedding", D_INDEPENDENT, "params", options)
        for d, group in with_quality.items() if len(group)
    }
    return ScalingAnalysis(
        loss_vs_params=loss_vs_params,
        loss_vs_params_total=loss_vs_total,
        frontier=frontier,
        isoflop=isoflop,
        isoflop_profiles=profiles,
        bits_per_image_vs_params=bpi_fits,
        best_bits=best_bits_by_size(with_quality, vocab, quality_fits),
        vocab=vocab,
        excluded=excluded,
        headline=headline(loss_vs_params),
        bits_per_image_loglog=loglog,
        quality_vs_params=quality_fits,
        seed_spread=seed_spread(table, include_partial),
    )


def _loglog(group: pd.DataFrame, options: dict) -> LogLogFit | str:
    points = group[np.isfinite(group["params_non_embedding"]) & (group["params_non_embedding"] > 0)]
    try:
        return fit_loglog(points["params_non_embedding"].to_numpy(), points["bits_per_image"].to_numpy(), **options)
    except FitInputError as error:
        return str(error)


SPREAD_COLUMNS = ("bits_per_image", "psnr_expected", "mse_expected", "psnr_predicted", "checker_score", "bit_accuracy")


def seed_spread(table: pd.DataFrame, include_partial: bool = False) -> pd.DataFrame:
    """Per d and model size that has runs of 2+ seeds (largest budget, main runs only): each measure's
    mean and spread (max - min) over the seeds."""
    runs = table[(table["task"] == "transformer") & (table["parent"] == "")]
    if not include_partial:
        runs = runs[runs["status"] == "complete"]
    rows = []
    for (d, depth), group in runs.groupby(["d", "depth"]):
        group = group[group["images_seen"] == group["images_seen"].max()]
        if group["seed"].nunique() < 2:
            continue
        row: dict[str, Any] = {"d": d, "depth": depth, "seeds": int(group["seed"].nunique())}
        for column in SPREAD_COLUMNS:
            values = group[column].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[f"{column}_mean"] = float(values.mean()) if values.size else np.nan
            row[f"{column}_spread"] = float(values.max() - values.min()) if values.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def largest_budget_per_size(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model size (depth): the one trained on the most images (then: lowest loss)."""
    ordered = rows.sort_values(["images_seen", "val_loss"], ascending=[False, True], kind="stable")
    return ordered.drop_duplicates(subset="params_non_embedding", keep="first").sort_values("params_non_embedding")


def compute_frontier(rows: pd.DataFrame) -> pd.DataFrame:
    """Runs that no run with less (or equal) compute beats: the lower envelope of loss against FLOPs."""
    ordered = rows.sort_values(["train_flops", "val_loss"], kind="stable")
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], ordered["val_loss"].to_numpy()[:-1]]))
    return ordered[ordered["val_loss"].to_numpy() < best_before]


def best_bits_by_size(groups: dict[float, pd.DataFrame], vocab: FitResult, per_d: dict[float, FitResult] | None = None) -> pd.DataFrame:
    """Per model size (depth), in the d-independent measure (pixel error of the images decoded from
    the model's own teacher-forced expected codes; lower is better): each d's value, the observed best d, and the d
    the joint L(N, d) law predicts best at that size (the per-d power laws of the measure when the joint
    law is not fitted; ``best_d_predicted_by`` says which). Bits per image are shown beside it."""
    groups = {d: g for d, g in groups.items() if len(g)}
    if not groups:
        return pd.DataFrame()
    table = pd.concat(groups.values())
    rows = []
    for depth, at_depth in table.groupby("depth"):
        params = float(np.exp(np.mean(np.log(at_depth["params_non_embedding"]))))
        by_bits = {float(d): float(v) for d, v in zip(at_depth["bits"], at_depth[D_INDEPENDENT])}
        row: dict[str, Any] = {"depth": depth, "params": params}
        row |= {f"{D_INDEPENDENT}_d{d:g}": by_bits.get(d, np.nan) for d in groups}
        row |= {f"{QUALITY_PSNR}_d{float(d):g}": float(v) for d, v in zip(at_depth["bits"], at_depth[QUALITY_PSNR])}
        row |= {f"psnr_predicted_d{float(d):g}": float(v) for d, v in zip(at_depth["bits"], at_depth["psnr_predicted"])}
        row |= {f"bits_per_image_d{float(d):g}": float(v) for d, v in zip(at_depth["bits"], at_depth["bits_per_image"])}
        row["best_d_observed"] = min(by_bits, key=by_bits.get) if len(by_bits) >= 2 else np.nan
        fitted = {d: r.fit for d, r in (per_d or {}).items() if r.fit is not None}
        if vocab.fit is not None:
            row["best_d_predicted"], row["best_d_predicted_by"] = float(vocab.fit.optimal_bits(params)), "joint L(N, d)"
        elif len(fitted) >= 2:
            predicted = {d: fit.predict(params) for d, fit in fitted.items()}
            row["best_d_predicted"], row["best_d_predicted_by"] = float(best_bits(predicted, lambda loss: loss)), "per-d power laws"
        else:
            row["best_d_predicted"], row["best_d_predicted_by"] = np.nan, "no law"
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
    title = f"joint vocabulary law L(N, d) in the d-independent measure L = {D_INDEPENDENT} (pixel MSE of images decoded from the teacher-forced expected codes)"
    return _attempt(
        title,
        lambda: fit_vocab(rows["params_non_embedding"].to_numpy(), rows["bits"].to_numpy(), rows[D_INDEPENDENT].to_numpy(), **options),
        None,
        rows,
    )


def _attempt(title: str, make: Callable[[], Fit], x_name: str | None, points: pd.DataFrame) -> FitResult:
    try:
        with np.errstate(all="ignore"):
            return FitResult(title, make(), "", x_name, points)
    except FitInputError as error:
        return FitResult(title, None, str(error), x_name, points)
