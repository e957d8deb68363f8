"""Multi-start fitting of log-sum-exp laws: every start optimized, the best kept.

Design (why it is fast enough for the 4,500-start Chinchilla grid):

1. *Screen by optimizing, not by evaluating.* All starts run L-BFGS together in one
   batched numpy optimizer (:mod:`analysis.lbfgs`); the objective and its analytic
   gradient are computed for every active start in one vectorized pass, with the
   per-point arithmetic in float32 (:class:`analysis.lse.HuberLseObjective`). Each
   start runs to its own convergence (relative decrease below 1e-8, or no further
   decrease, or 1,000 iterations), so every start is optimized, not just evaluated,
   and the batch shrinks as starts finish. On the Chinchilla grid a start needs
   30-250 iterations; the whole batch costs ~300k point-evaluations of 250 points.
2. *Polish.* The best few *distinct* optima are re-optimized with the objective in
   float64 and a tight tolerance (relative decrease 1e-13). The lowest objective wins.

The same batched optimizer refits bootstrap resamples: a resample is a vector of
point multiplicities used as weights, so all replicates (each from a handful of
starts near the best optimum) are solved in one batch.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.lbfgs import minimize_batched
from analysis.lse import HuberLseObjective, LseDesign

_SCREEN_FTOL = 1e-8
_POLISH_FTOL = 1e-13
_SAME_OPTIMUM = 1e-3  # max |delta theta| below which two optima count as one
_REACHED_BEST = 1e-6  # relative objective gap within which a start "reached" the best


@dataclass(frozen=True)
class MultiStartResult:
    theta: np.ndarray
    objective: float
    best_start: np.ndarray
    n_starts: int
    n_reached_best: int
    local_optima: np.ndarray
    local_objectives: np.ndarray


def grid_starts(*axes: Sequence[float]) -> np.ndarray:
    """Cartesian product of per-parameter start values, one start per row."""
    return np.array(list(itertools.product(*axes)), dtype=float)


def fit_multistart(
    design: LseDesign, log_loss: np.ndarray, starts: np.ndarray, *, delta: float = 1e-3, n_polish: int = 5
) -> MultiStartResult:
    """Optimize from every start and return the best optimum (see module docstring)."""
    screen = HuberLseObjective(design, log_loss, delta, mixed_precision=True)
    batch = minimize_batched(lambda x, rows: screen(x), starts, ftol=_SCREEN_FTOL)
    exact = HuberLseObjective(design, log_loss, delta)
    screened_values, _ = exact(batch.x)
    screened_values = np.where(np.isfinite(screened_values), screened_values, np.inf)

    candidates = np.asarray(_distinct_best(batch.x, screened_values, n_polish))
    polished = minimize_batched(lambda x, rows: exact(x), batch.x[candidates], ftol=_POLISH_FTOL, gtol=1e-14)
    improved = np.isfinite(polished.fun) & (polished.fun <= screened_values[candidates])
    optima = np.where(improved[:, None], polished.x, batch.x[candidates])
    values = np.where(improved, polished.fun, screened_values[candidates])
    order = np.argsort(values)
    optima, values = optima[order], values[order]
    candidates = candidates[order]
    best_value = values[0]
    reached = int(np.sum(screened_values <= best_value * (1 + _REACHED_BEST)))
    return MultiStartResult(
        theta=optima[0],
        objective=float(best_value),
        best_start=starts[candidates[0]],
        n_starts=len(starts),
        n_reached_best=max(reached, 1),
        local_optima=optima,
        local_objectives=values,
    )


def refit_weighted(
    design: LseDesign, log_loss: np.ndarray, starts: np.ndarray, weights: np.ndarray, *, delta: float = 1e-3
) -> np.ndarray:
    """Best parameters for each row of ``weights`` (B, n), each refitted from every row of ``starts``."""
    objective = HuberLseObjective(design, log_loss, delta)
    n_replicates, n_starts = weights.shape[0], starts.shape[0]
    x0 = np.tile(starts, (n_replicates, 1))
    replicate_of_row = np.repeat(np.arange(n_replicates), n_starts)
    batch = minimize_batched(lambda x, rows: objective(x, weights[replicate_of_row[rows]]), x0)
    values = np.where(np.isfinite(batch.fun), batch.fun, np.inf).reshape(n_replicates, n_starts)
    best = np.argmin(values, axis=1)
    return batch.x.reshape(n_replicates, n_starts, -1)[np.arange(n_replicates), best]


def neighbourhood_starts(result: MultiStartResult, size: int = 5) -> np.ndarray:
    """Starts for refits: the best optimum, the grid start that led to it, and the next-best optima."""
    rows = [result.theta, result.best_start, *result.local_optima[1 : size - 1]]
    return np.array(rows[:size])


def _distinct_best(x: np.ndarray, values: np.ndarray, count: int) -> list[int]:
    chosen: list[int] = []
    for i in np.argsort(values, kind="stable"):
        if not np.isfinite(values[i]):
            break
        if all(np.max(np.abs(x[i] - x[j])) > _SAME_OPTIMUM for j in chosen):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return chosen or [int(np.argmin(values))]
