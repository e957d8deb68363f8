"""Fits as JSON-ready dicts and as readable text tables."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from analysis import chinchilla, powerlaw, vocab
from analysis.chinchilla import ChinchillaFit
from analysis.goodness import HoldoutResult
from analysis.isoflop import IsoFlopFit
from analysis.powerlaw import PowerLawFit
from analysis.vocab import VocabFit

Fit = ChinchillaFit | PowerLawFit | IsoFlopFit | VocabFit


def json_number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """Recursively: numpy scalars and arrays to Python, non-finite floats to None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return json_number(value)
    return value


def json_interval(fit: Fit, name: str) -> list[float | None] | None:
    interval = fit.intervals.get(name)
    return None if interval is None else [json_number(v) for v in interval]


def to_dict(fit: Fit, *, x_name: str | None = None) -> dict[str, Any]:
    if isinstance(fit, IsoFlopFit):
        return _isoflop_dict(fit)
    out: dict[str, Any]
    if isinstance(fit, ChinchillaFit):
        out = {"form": "chinchilla", "law": chinchilla.FORM}
        out |= _parameters(fit, chinchilla.PARAMETERS)
        out |= {"a": fit.params_exponent, "a_ci": json_interval(fit, "params_exponent")}
        out |= {"b": fit.tokens_exponent, "b_ci": json_interval(fit, "tokens_exponent")}
        out |= {"G": json_number(fit.G), "G_ci": json_interval(fit, "G")}
    elif isinstance(fit, PowerLawFit):
        out = {"form": "powerlaw", "law": powerlaw.FORM, "x": x_name or "x"} | _parameters(fit, powerlaw.PARAMETERS)
    else:
        out = {"form": "vocab", "law": vocab.FORM} | _parameters(fit, vocab.PARAMETERS)
    return out | _common(fit, x_name)


def _parameters(fit: Fit, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        out[name] = json_number(getattr(fit, name))
        out[f"{name}_ci"] = json_interval(fit, name)
    return out


def _common(fit: ChinchillaFit | PowerLawFit | VocabFit, x_name: str | None) -> dict[str, Any]:
    g = fit.goodness
    return {
        "n_points": fit.n_points,
        "n_starts": fit.n_starts,
        "n_starts_at_best": fit.n_reached_best,
        "objective": fit.objective,
        "r2": json_number(g.r2),
        "r2_log": json_number(g.r2_log),
        "rmse_log": json_number(g.rmse_log),
        "log_residuals": [json_number(r) for r in g.log_residuals],
        "ci_level": fit.ci_level,
        "n_bootstrap": fit.n_bootstrap,
        "holdout": None if fit.holdout is None else _holdout_dict(fit.holdout, x_name),
        "seconds": fit.seconds,
    }


def _holdout_dict(holdout: HoldoutResult, x_name: str | None) -> dict[str, Any]:
    return {
        "k": holdout.k,
        "ranked_by": x_name or holdout.ranked_by,
        "data_rows": [int(i) + 1 for i in holdout.indices],
        "observed": holdout.observed.tolist(),
        "predicted": holdout.predicted.tolist(),
        "relative_error": holdout.relative_errors.tolist(),
        "mean_abs_relative_error": holdout.mean_abs_relative_error,
        "max_abs_relative_error": holdout.max_abs_relative_error,
    }


def _isoflop_dict(fit: IsoFlopFit) -> dict[str, Any]:
    holdout = None
    if fit.holdout is not None:
        holdout = {
            "k": fit.holdout.k,
            "compute": fit.holdout.compute.tolist(),
            "observed_params_opt": fit.holdout.observed_params.tolist(),
            "predicted_params_opt": fit.holdout.predicted_params.tolist(),
            "predicted_over_observed": fit.holdout.params_ratio.tolist(),
        }
    return {
        "form": "isoflop",
        "law": "N_opt = k_N C^a, D_opt = k_D C^b",
        "a": fit.params_exponent,
        "a_ci": json_interval(fit, "params_exponent"),
        "b": fit.tokens_exponent,
        "b_ci": json_interval(fit, "tokens_exponent"),
        "k_N": fit.params_coefficient,
        "k_D": fit.tokens_coefficient,
        "r2_log_params_opt": json_number(fit.r2_params),
        "r2_log_tokens_opt": json_number(fit.r2_tokens),
        "budgets": [
            {
                "compute": b.compute,
                "n_runs": b.n_runs,
                "params_opt": b.params_opt,
                "tokens_opt": b.tokens_opt,
                "loss_opt": b.loss_opt,
                "vertex_inside_sampled_range": b.vertex_inside,
                "parabola_r2": json_number(b.r2),
            }
            for b in fit.budgets
        ],
        "skipped_budgets": list(fit.skipped),
        "n_points": fit.n_points,
        "ci_level": fit.ci_level,
        "n_bootstrap": fit.n_bootstrap,
        "holdout": holdout,
        "seconds": fit.seconds,
    }


def render(fit: Fit, *, x_name: str | None = None) -> str:
    if isinstance(fit, IsoFlopFit):
        return _render_isoflop(fit)
    if isinstance(fit, ChinchillaFit):
        title = f"Chinchilla approach 3   {chinchilla.FORM}"
        rows = [(name, getattr(fit, name), fit.intervals.get(name)) for name in chinchilla.PARAMETERS]
        rows += [
            ("a  (N_opt ~ C^a)", fit.params_exponent, fit.intervals.get("params_exponent")),
            ("b  (D_opt ~ C^b)", fit.tokens_exponent, fit.intervals.get("tokens_exponent")),
            ("G  (N_opt = G (C/6)^a)", fit.G, fit.intervals.get("G")),
        ]
    elif isinstance(fit, PowerLawFit):
        title = f"Power law   {powerlaw.FORM}" + (f"   (X = {x_name})" if x_name else "")
        rows = [(name, getattr(fit, name), fit.intervals.get(name)) for name in powerlaw.PARAMETERS]
    else:
        title = f"Vocabulary law   {vocab.FORM}"
        rows = [(name, getattr(fit, name), fit.intervals.get(name)) for name in vocab.PARAMETERS]
    g = fit.goodness
    lines = [
        title,
        f"{fit.n_points} runs; {fit.n_starts:,} starts optimized, {fit.n_reached_best:,} reached the best "
        f"objective ({fit.objective:.4g})",
        "",
        *_parameter_table(rows, fit.ci_level, fit.n_bootstrap),
        "",
        f"goodness of fit: R^2 {g.r2:.5f} (loss), {g.r2_log:.5f} (log-loss); RMS log residual {g.rmse_log:.4g}, "
        f"max {g.max_abs_log_residual:.4g}",
        "log residuals (input order): " + ", ".join(f"{r:+.4f}" for r in g.log_residuals),
    ]
    if fit.holdout is not None:
        h = fit.holdout
        lines.append(
            f"holdout: refit without the {h.k} largest runs by {x_name or h.ranked_by}, predicting them: "
            f"mean |error| {100 * h.mean_abs_relative_error:.2f}%, max {100 * h.max_abs_relative_error:.2f}%"
        )
    lines.append(f"fit wall time: {fit.seconds:.2f} s")
    return "\n".join(lines)


def _render_isoflop(fit: IsoFlopFit) -> str:
    rows = [
        ("a  (N_opt ~ C^a)", fit.params_exponent, fit.intervals.get("params_exponent")),
        ("b  (D_opt ~ C^b)", fit.tokens_exponent, fit.intervals.get("tokens_exponent")),
        ("k_N", fit.params_coefficient, None),
        ("k_D", fit.tokens_coefficient, None),
    ]
    lines = [
        "Chinchilla approach 2 (IsoFLOP)   N_opt = k_N C^a, D_opt = k_D C^b",
        f"{fit.n_points} runs in {len(fit.budgets)} compute budgets",
        "",
        *_parameter_table(rows, fit.ci_level, fit.n_bootstrap),
        "",
        f"  {'compute C':>11}  {'runs':>4}  {'N_opt':>10}  {'D_opt':>10}  {'loss_opt':>9}  {'parabola R^2':>12}",
    ]
    for b in fit.budgets:
        flag = "" if b.vertex_inside else "  (vertex outside the sampled N range)"
        lines.append(
            f"  {b.compute:11.4g}  {b.n_runs:4d}  {b.params_opt:10.4g}  {b.tokens_opt:10.4g}  {b.loss_opt:9.5g}  {b.r2:12.4f}{flag}"
        )
    for reason in fit.skipped:
        lines.append(f"  skipped {reason}")
    lines += ["", f"goodness of fit: R^2 of log N_opt on log C {fit.r2_params:.5f}, of log D_opt {fit.r2_tokens:.5f}"]
    if fit.holdout is not None:
        ratios = ", ".join(f"{r:.3f}" for r in fit.holdout.params_ratio)
        lines.append(f"holdout: trend refit without the {fit.holdout.k} largest budgets predicts their N_opt x ({ratios})")
    lines.append(f"fit wall time: {fit.seconds:.2f} s")
    return "\n".join(lines)


def _parameter_table(rows: list[tuple[str, float, tuple[float, float] | None]], level: float, n_bootstrap: int) -> list[str]:
    width = max(len(name) for name, _, _ in rows)
    header = f"{int(round(100 * level))}% CI ({n_bootstrap} bootstrap refits)" if n_bootstrap else "CI: none (--bootstrap 0)"
    lines = [f"  {'parameter':<{width}}  {'value':>11}   {header}"]
    wide = []
    for name, value, interval in rows:
        ci = "" if interval is None else f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"
        if interval_wider_than_estimate(value, interval):
            ci += "  (wider than the estimate)"
            wide.append(name.split()[0])
        lines.append(f"  {name:<{width}}  {_fmt(value):>11}   {ci}")
    if wide:
        lines.append(f"  WARNING: the interval of {', '.join(wide)} is wider than the estimate itself: not determined by these points")
    return lines


def interval_wider_than_estimate(value: float, interval: tuple[float, float] | None) -> bool:
    """True when a finite interval is wider than |value| (or not finite at all while the value is)."""
    if interval is None or not np.isfinite(value):
        return False
    low, high = interval
    if np.isnan(low) or np.isnan(high):
        return False  # no interval was computed
    return bool(high - low > abs(value))  # an infinite end counts as wider


def _fmt(value: float) -> str:
    return f"{value:.5g}" if np.isfinite(value) else "nan"
