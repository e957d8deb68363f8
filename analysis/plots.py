"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG
and returns its path, or None when there is nothing to draw."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from analysis.curves import Curve  # noqa: E402
from analysis.isoflop import fit_parabola  # noqa: E402
from analysis.scaling_analysis import FitResult, ScalingAnalysis  # noqa: E402

DPI = 110
_BITS_COLORS = plt.get_cmap("tab10")
_SIZE_COLORS = plt.get_cmap("viridis")


def plot_loss_vs_compute(table: pd.DataFrame, curves: dict[str, Curve], analysis: ScalingAnalysis, path: Path) -> Path | None:
    """Per d: validation loss against training FLOPs for every run, final points, and the fitted frontier."""
    runs = _transformer_runs(table)
    bits = sorted(runs["d"].dropna().unique())
    if not bits:
        return None
    figure, axes = _panels(len(bits))
    sizes = _size_colors(runs)
    for ax, d in zip(axes, bits):
        for row in runs[runs["d"] == d].itertuples():
            color = sizes.get(row.depth, "grey")
            curve = curves.get(row.run)
            if curve is not None and np.isfinite(curve.flops).any():
                ax.plot(curve.flops, curve.loss, color=color, alpha=0.45, lw=1)
            if np.isfinite(row.train_flops) and np.isfinite(row.val_loss):
                filled = row.status == "complete"
                ax.scatter(row.train_flops, row.val_loss, color=color if filled else "none", edgecolors=color, zorder=3, s=28)
        _draw_power_law(ax, analysis.frontier.get(d), "train_flops", "C")
        ax.set(xscale="log", yscale="log", xlabel="training FLOPs (exact)", ylabel="val loss", title=f"d = {d:g}")
        for depth, color in sizes.items():
            ax.plot([], [], color=color, label=f"depth {depth:g}")
        ax.legend(fontsize=7)
    return _save(figure, path)


def plot_loss_vs_params(analysis: ScalingAnalysis, path: Path) -> Path | None:
    """Validation loss against non-embedding parameters, one colour per d, with the per-d laws."""
    results = {d: r for d, r in analysis.loss_vs_params.items() if len(r.points)}
    return _per_bits_figure(results, "params_non_embedding", "val_loss", "non-embedding parameters N", "val loss", "N", path)


def plot_vocab(analysis: ScalingAnalysis, path: Path) -> Path | None:
    """Bits per image (the same unit for every d) against parameters, with per-d laws."""
    results = {d: r for d, r in analysis.bits_per_image_vs_params.items() if len(r.points)}
    return _per_bits_figure(results, "params_non_embedding", "bits_per_image", "non-embedding parameters N", "val bits per image", "N", path)


def plot_isoflop(analysis: ScalingAnalysis, path: Path) -> Path | None:
    """Per fitted d: loss against N at each interpolated budget (parabola, vertex), and N_opt against C."""
    fitted = {d: r for d, r in analysis.isoflop.items() if r.fit is not None}
    if not fitted:
        return None
    figure, grid = plt.subplots(len(fitted), 2, figsize=(10, 3.8 * len(fitted)), squeeze=False)
    for (profile_ax, trend_ax), (d, result) in zip(grid, fitted.items()):
        points, fit = result.points, result.fit
        budgets = sorted(points["flops"].unique())
        colors = plt.get_cmap("plasma")(np.linspace(0.1, 0.85, len(budgets)))
        for budget, color in zip(budgets, colors):
            at = points[points["flops"] == budget]
            log_n = np.log(at["params"].to_numpy())
            profile_ax.scatter(at["params"], at["loss"], color=color, s=18, label=f"C = {budget:.2g}")
            centre = log_n.mean()
            c0, c1, c2 = fit_parabola(log_n - centre, at["loss"].to_numpy())
            grid_n = np.linspace(log_n.min(), log_n.max(), 50) - centre
            profile_ax.plot(np.exp(grid_n + centre), c0 + c1 * grid_n + c2 * grid_n**2, color=color, lw=1)
        for budget in fit.budgets:
            profile_ax.scatter(budget.params_opt, budget.loss_opt, marker="*", color="black", s=70, zorder=4)
        profile_ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="val loss (interpolated)", title=f"IsoFLOP profiles, d = {d:g}")
        profile_ax.legend(fontsize=7)
        compute = np.array([b.compute for b in fit.budgets])
        trend_ax.scatter(compute, [b.params_opt for b in fit.budgets], color="black", marker="*", s=60)
        span = np.geomspace(compute.min(), compute.max(), 20)
        trend_ax.plot(span, fit.optimal_params(span), color="C3", label=f"N_opt ~ C^{fit.params_exponent:.3g}")
        trend_ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="N_opt", title=f"compute-optimal size, d = {d:g}")
        trend_ax.legend(fontsize=8)
    return _save(figure, path)


def plot_scale_accuracy(table: pd.DataFrame, accuracy: dict[str, np.ndarray], path: Path) -> Path | None:
    """Per d: final validation bit accuracy at each scale, one line per model size (its most trained run)."""
    runs = _transformer_runs(table)
    runs = runs.loc[np.array([accuracy.get(name, np.array([])).size > 0 for name in runs["run"]], dtype=bool)]  # an empty list would select columns
    runs = runs.sort_values("images_seen", ascending=False, kind="stable").drop_duplicates(subset=["d", "depth"])
    bits = sorted(runs["d"].dropna().unique())
    if not bits:
        return None
    figure, axes = _panels(len(bits))
    sizes = _size_colors(runs)
    for ax, d in zip(axes, bits):
        for row in runs[runs["d"] == d].sort_values(["depth", "images_seen"]).itertuples():
            values = accuracy[row.run]
            style = "-" if row.status == "complete" else ":"
            ax.plot(np.arange(values.size), values, style, marker="o", ms=3, color=sizes.get(row.depth, "grey"), label=_run_label(row))
        ax.set(xlabel="scale index k (coarse -> fine)", ylabel="val bit accuracy", title=f"d = {d:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6)
    return _save(figure, path)


def _per_bits_figure(results: dict[float, FitResult], x: str, y: str, x_label: str, y_label: str, symbol: str, path: Path) -> Path | None:
    if not results:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (d, result) in enumerate(sorted(results.items())):
        color = _BITS_COLORS(i % 10)
        ax.scatter(result.points[x], result.points[y], color=color, s=28, zorder=3, label=f"d = {d:g}")
        _draw_power_law(ax, result, x, symbol, color=color)
    ax.set(xscale="log", yscale="log", xlabel=x_label, ylabel=y_label)
    ax.legend(fontsize=8)
    return _save(figure, path)


def _draw_power_law(ax: plt.Axes, result: FitResult | None, x: str, symbol: str, color: str = "black") -> None:
    if result is None or result.fit is None or result.points.empty:
        return
    values = result.points[x].to_numpy()
    span = np.geomspace(values.min(), values.max(), 60)
    fit = result.fit
    ax.plot(span, fit.predict(span), "--", color=color, lw=1.3, label=f"E + A {symbol}^-{fit.alpha:.3g} (E = {fit.E:.3g})")


def _transformer_runs(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["task"] == "transformer"]


def _size_colors(runs: pd.DataFrame) -> dict[float, tuple]:
    depths = sorted(runs["depth"].dropna().unique())
    return {depth: _SIZE_COLORS(x) for depth, x in zip(depths, np.linspace(0.0, 0.9, max(len(depths), 1)))}


def _run_label(row: Any) -> str:
    images = f", {row.images_seen:.3g} img" if np.isfinite(row.images_seen) else ""
    return f"depth {row.depth:g}{images}" + ("" if row.status == "complete" else " (partial)")


def _panels(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    figure, axes = plt.subplots(1, count, figsize=(5.2 * count, 4.2), squeeze=False)
    return figure, list(axes[0])


def _save(figure: plt.Figure, path: Path) -> Path:
    for ax in figure.axes:  # on a log x axis spanning a decade or more, minor-tick labels overlap
        low, high = ax.get_xlim()
        if ax.get_xscale() == "log" and high >= 10 * low:
            ax.xaxis.set_minor_formatter(NullFormatter())
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
