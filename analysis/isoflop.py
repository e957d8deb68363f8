"""Chinchilla approach 2 (IsoFLOP profiles).

1. Runs are grouped by compute budget: C is the ``flops`` of each run (default 6ND),
   sorted in log space; a group collects the runs within a relative ``tolerance``
   of its smallest member, and its budget is the geometric mean of their C.
2. Per budget, a parabola of loss against log N is fitted by least squares; its
   vertex is N*. D* is C / (6 N*) (``tokens_from="6nd"``), or the vertex of a
   parabola of loss against log D (``tokens_from="parabola"``, for exact FLOP counts).
   Budgets with fewer than 3 distinct N, or a parabola that opens downwards, are
   skipped and reported.
3. log N* and log D* are regressed on log C: N* = k_N C^a, D* = k_D C^b.

Bootstrap intervals resample the parabola residuals within each budget (the model
sizes of an IsoFLOP sweep are a fixed design: resampling the runs themselves drops
the end points of a 5-9 point profile and turns its vertex into an extrapolation),
refit every parabola and both regressions; a replicate in which fewer than 2
budgets stay convex is dropped. ``holdout_largest=k`` leaves out the k largest *budgets*,
refits the trend and predicts their N*.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from analysis.bootstrap import Interval, intervals
from analysis.goodness import r_squared
from analysis.validation import FitInputError, positive_array, require_points

TokensFrom = Literal["6nd", "parabola"]
MIN_RUNS_PER_BUDGET = 3
MIN_BUDGETS = 2


@dataclass(frozen=True)
class BudgetOptimum:
    compute: float
    n_runs: int
    params_opt: float
    tokens_opt: float
    loss_opt: float
    vertex_inside: bool
    """Whether N* lies within the sampled range of N (outside means extrapolated)."""
    r2: float


@dataclass(frozen=True)
class IsoFlopHoldout:
    k: int
    compute: np.ndarray
    observed_params: np.ndarray
    predicted_params: np.ndarray

    @property
    def params_ratio(self) -> np.ndarray:
        """Predicted / observed N* for each held-out budget."""
        return self.predicted_params / self.observed_params


@dataclass(frozen=True)
class IsoFlopFit:
    params_exponent: float
    """a in N* = k_N C^a."""
    tokens_exponent: float
    """b in D* = k_D C^b."""
    params_coefficient: float
    tokens_coefficient: float
    budgets: tuple[BudgetOptimum, ...]
    skipped: tuple[str, ...]
    intervals: dict[str, Interval]
    r2_params: float
    r2_tokens: float
    n_points: int
    n_bootstrap: int
    ci_level: float
    holdout: IsoFlopHoldout | None
    seconds: float

    def optimal_params(self, compute: np.ndarray | float) -> np.ndarray:
        return self.params_coefficient * np.asarray(compute, dtype=float) ** self.params_exponent

    def optimal_tokens(self, compute: np.ndarray | float) -> np.ndarray:
        return self.tokens_coefficient * np.asarray(compute, dtype=float) ** self.tokens_exponent


def group_budgets(compute: np.ndarray, tolerance: float = 0.1) -> np.ndarray:
    """Group label per run: runs within relative ``tolerance`` of their group's smallest C share a label."""
    log_compute = np.log(np.asarray(compute, dtype=float))
    labels = np.empty(log_compute.size, dtype=int)
    width = np.log1p(tolerance)
    label, anchor = -1, -np.inf
    for i in np.argsort(log_compute, kind="stable"):
        if log_compute[i] - anchor > width:
            label, anchor = label + 1, log_compute[i]
        labels[i] = label
    return labels


def fit_isoflop(
    params: np.ndarray,
    loss: np.ndarray,
    *,
    tokens: np.ndarray | None = None,
    flops: np.ndarray | None = None,
    tolerance: float = 0.1,
    tokens_from: TokensFrom = "6nd",
    n_bootstrap: int = 0,
    seed: int = 0,
    ci: float = 0.95,
    holdout_largest: int = 0,
) -> IsoFlopFit:
    """Approach 2 from runs (N, loss) with either ``flops`` or ``tokens`` (then C = 6ND)."""
    clock = time.perf_counter()
    params = positive_array("params", params)
    loss = positive_array("loss", loss, params.size)
    if flops is None and tokens is None:
        raise FitInputError("the isoflop form needs flops or tokens to know each run's compute budget")
    tokens = None if tokens is None else positive_array("tokens", tokens, params.size)
    compute = 6.0 * params * tokens if flops is None else positive_array("flops", flops, params.size)
    if tokens_from == "parabola" and tokens is None:
        raise FitInputError("tokens_from='parabola' needs tokens")
    require_points(params.size, MIN_BUDGETS * MIN_RUNS_PER_BUDGET, "the isoflop form")

    labels = group_budgets(compute, tolerance)
    groups = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    budgets, used, skipped = _budget_optima(groups, params, tokens, loss, compute, tokens_from)
    if len(budgets) < MIN_BUDGETS:
        raise FitInputError(
            f"the isoflop form needs at least {MIN_BUDGETS} compute budgets with {MIN_RUNS_PER_BUDGET}+ distinct "
            f"model sizes and a convex loss profile; found {len(budgets)} of {len(groups)} budgets "
            f"(tolerance {tolerance:g}){': ' + '; '.join(skipped) if skipped else ''}"
        )
    if holdout_largest < 0 or len(budgets) - holdout_largest < MIN_BUDGETS:
        raise FitInputError(
            f"holdout of {holdout_largest} budgets leaves {len(budgets) - holdout_largest}; the trend needs {MIN_BUDGETS}"
        )

    log_c = np.log([b.compute for b in budgets])
    log_n = np.log([b.params_opt for b in budgets])
    log_d = np.log([b.tokens_opt for b in budgets])
    a, log_kn = np.polyfit(log_c, log_n, 1)
    b, log_kd = np.polyfit(log_c, log_d, 1)

    samples: dict[str, np.ndarray] = {}
    if n_bootstrap > 0:
        samples = _bootstrap(used, params, tokens, loss, compute, tokens_from, n_bootstrap, np.random.default_rng(seed))

    holdout = None
    if holdout_largest:
        keep = slice(0, len(budgets) - holdout_largest)  # budgets are sorted by compute
        slope, intercept = np.polyfit(log_c[keep], log_n[keep], 1)
        held = slice(len(budgets) - holdout_largest, None)
        holdout = IsoFlopHoldout(
            holdout_largest, np.exp(log_c[held]), np.exp(log_n[held]), np.exp(intercept + slope * log_c[held])
        )

    return IsoFlopFit(
        params_exponent=float(a),
        tokens_exponent=float(b),
        params_coefficient=float(np.exp(log_kn)),
        tokens_coefficient=float(np.exp(log_kd)),
        budgets=tuple(budgets),
        skipped=tuple(skipped),
        intervals=intervals(samples, ci),
        r2_params=r_squared(log_n, log_kn + a * log_c),
        r2_tokens=r_squared(log_d, log_kd + b * log_c),
        n_points=params.size,
        n_bootstrap=n_bootstrap,
        ci_level=ci,
        holdout=holdout,
        seconds=time.perf_counter() - clock,
    )


def fit_parabola(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares (c0, c1, c2) of y = c0 + c1 x + c2 x^2; ``y`` (m,) or a batch (B, m) -> (..., 3)."""
    return np.asarray(y, dtype=float) @ np.linalg.pinv(np.vander(x, 3, increasing=True)).T


def _vertex(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex position and value of the fitted parabola (NaN where not convex), and its coefficients in x - mean(x)."""
    centre = x.mean()
    coefficients = np.atleast_2d(fit_parabola(x - centre, y))
    c0, c1, c2 = coefficients.T
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
    return position + centre, c0 + c1 * position + c2 * position**2, coefficients


def _budget_optima(groups, params, tokens, loss, compute, tokens_from):
    budgets, used, skipped = [], [], []
    for rows in groups:
        budget = float(np.exp(np.mean(np.log(compute[rows]))))
        log_n = np.log(params[rows])
        if np.unique(log_n).size < MIN_RUNS_PER_BUDGET:
            skipped.append(f"C={budget:.3g}: {np.unique(log_n).size} distinct model sizes")
            continue
        (vertex,), (loss_opt,), (coefficients,) = _vertex(log_n, loss[rows])
        if not np.isfinite(vertex):
            skipped.append(f"C={budget:.3g}: loss is not convex in log N")
            continue
        params_opt = float(np.exp(vertex))
        if tokens_from == "parabola":
            (vertex_d,), _, _ = _vertex(np.log(tokens[rows]), loss[rows])
            if not np.isfinite(vertex_d):
                skipped.append(f"C={budget:.3g}: loss is not convex in log D")
                continue
            tokens_opt = float(np.exp(vertex_d))
        else:
            tokens_opt = budget / (6.0 * params_opt)
        fitted = np.polyval(coefficients[::-1], log_n - log_n.mean())
        budgets.append(
            BudgetOptimum(
                compute=budget,
                n_runs=rows.size,
                params_opt=params_opt,
                tokens_opt=tokens_opt,
                loss_opt=float(loss_opt),
                vertex_inside=bool(log_n.min() <= vertex <= log_n.max()),
                r2=r_squared(loss[rows], fitted),
            )
        )
        used.append(rows)
    return budgets, used, skipped


def _bootstrap(used, params, tokens, loss, compute, tokens_from, n_bootstrap, rng) -> dict[str, np.ndarray]:
    log_c = np.array([np.mean(np.log(compute[rows])) for rows in used])
    log_n_opt = np.empty((n_bootstrap, len(used)))
    log_d_opt = np.empty((n_bootstrap, len(used)))
    for j, rows in enumerate(used):
        log_n_opt[:, j] = _vertex(np.log(params[rows]), _resample_residuals(np.log(params[rows]), loss[rows], n_bootstrap, rng))[0]
        if tokens_from == "parabola":
            log_d = np.log(tokens[rows])
            log_d_opt[:, j] = _vertex(log_d, _resample_residuals(log_d, loss[rows], n_bootstrap, rng))[0]
        else:
            log_d_opt[:, j] = log_c[j] - np.log(6.0) - log_n_opt[:, j]
    a = np.full(n_bootstrap, np.nan)
    b = np.full(n_bootstrap, np.nan)
    for i in range(n_bootstrap):
        ok = np.isfinite(log_n_opt[i]) & np.isfinite(log_d_opt[i])
        if ok.sum() >= MIN_BUDGETS:
            a[i] = np.polyfit(log_c[ok], log_n_opt[i, ok], 1)[0]
            b[i] = np.polyfit(log_c[ok], log_d_opt[i, ok], 1)[0]
    return {"params_exponent": a, "tokens_exponent": b}


def _resample_residuals(x: np.ndarray, y: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """(B, m) responses: the fitted parabola plus residuals drawn with replacement (leverage-inflated)."""
    centre = x.mean()
    fitted = np.polyval(fit_parabola(x - centre, y)[::-1], x - centre)
    residuals = (y - fitted) * np.sqrt(x.size / max(x.size - 3, 1))
    return fitted + residuals[rng.integers(0, x.size, size=(n_bootstrap, x.size))]
