"""The one fitting skeleton every parametric law uses (power law, Chinchilla approach 3, the vocabulary law):
multistart L-BFGS of the Huber loss of log residuals -> bootstrap refits from the best solutions ->
an optional refit without the k largest runs that predicts them. Each law supplies its design, start
grid, the map from normalized parameters to named ones, and its prediction."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import Interval, intervals, resample_weights
from analysis.goodness import GoodnessOfFit, HoldoutResult, goodness_of_fit, largest
from analysis.lse import LseDesign
from analysis.multistart import fit_multistart, neighbourhood_starts, refit_weighted

Named = Callable[[np.ndarray], dict[str, np.ndarray]]
"""(n, n_params) normalized parameters -> named parameter vectors in the input units."""


@dataclass(frozen=True, kw_only=True)
class LawFit:
    """What every fitted law reports besides its parameters."""

    intervals: dict[str, Interval]
    goodness: GoodnessOfFit
    objective: float
    n_points: int
    n_starts: int
    n_reached_best: int
    n_bootstrap: int
    ci_level: float
    holdout: HoldoutResult | None
    seconds: float


@dataclass(frozen=True)
class Holdout:
    """Refit without the ``k`` points ranked largest by ``ranking`` (named ``by``) and predict them:
    ``predict_without(mask)`` fits the kept points and returns its predictions for the held-out ones."""

    k: int
    ranking: np.ndarray
    by: str
    predict_without: Callable[[np.ndarray], np.ndarray]


def fit_law(
    design: LseDesign,
    loss: np.ndarray,
    loss_ref: float,
    starts: np.ndarray,
    named: Named,
    predict: Callable[[dict[str, float]], np.ndarray],
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
    delta: float,
    holdout: Holdout | None,
    started: float,
) -> tuple[dict[str, float], dict]:
    """(point estimate by name, the ``LawFit`` fields) of log(loss / loss_ref) = LSE(design(theta))."""
    log_loss = np.log(loss / loss_ref)
    best = fit_multistart(design, log_loss, starts, delta=delta)
    point = {name: float(v[0]) for name, v in named(best.theta[None, :]).items()}
    samples: dict[str, np.ndarray] = {}
    if n_bootstrap > 0:
        weights = resample_weights(loss.size, n_bootstrap, np.random.default_rng(seed))
        samples = named(refit_weighted(design, log_loss, neighbourhood_starts(best), weights, delta=delta))
    held = None
    if holdout is not None and holdout.k:
        mask = largest(holdout.ranking, holdout.k)
        held = HoldoutResult(holdout.k, holdout.by, np.flatnonzero(mask), loss[mask], holdout.predict_without(mask))
    common = dict(
        intervals=intervals(samples, ci),
        goodness=goodness_of_fit(loss, predict(point)),
        objective=best.objective,
        n_points=loss.size,
        n_starts=best.n_starts,
        n_reached_best=best.n_reached_best,
        n_bootstrap=n_bootstrap,
        ci_level=ci,
        holdout=held,
        seconds=time.perf_counter() - started,
    )
    return point, common
