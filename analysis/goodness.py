"""Goodness of fit: R^2 in loss and log-loss, residuals, and held-out prediction error."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GoodnessOfFit:
    r2: float
    r2_log: float
    rmse_log: float
    max_abs_log_residual: float
    log_residuals: np.ndarray
    """log(observed) - log(predicted), one per point, in input order."""


@dataclass(frozen=True)
class HoldoutResult:
    """A refit without the ``k`` largest runs, used to predict them."""

    k: int
    ranked_by: str
    indices: np.ndarray
    observed: np.ndarray
    predicted: np.ndarray

    @property
    def relative_errors(self) -> np.ndarray:
        return (self.predicted - self.observed) / self.observed

    @property
    def mean_abs_relative_error(self) -> float:
        return float(np.mean(np.abs(self.relative_errors)))

    @property
    def max_abs_relative_error(self) -> float:
        return float(np.max(np.abs(self.relative_errors)))


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
    residual = np.sum((observed - predicted) ** 2)
    total = np.sum((observed - np.mean(observed)) ** 2)
    return float(1.0 - residual / total) if total > 0 else float("nan")


def goodness_of_fit(observed: np.ndarray, predicted: np.ndarray) -> GoodnessOfFit:
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    log_residuals = np.log(observed) - np.log(predicted)
    return GoodnessOfFit(
        r2=r_squared(observed, predicted),
        r2_log=r_squared(np.log(observed), np.log(predicted)),
        rmse_log=float(np.sqrt(np.mean(log_residuals**2))),
        max_abs_log_residual=float(np.max(np.abs(log_residuals))),
        log_residuals=log_residuals,
    )


def largest(ranking: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` entries with the largest ranking value (ties broken by position)."""
    mask = np.zeros(len(ranking), dtype=bool)
    if k > 0:
        mask[np.argsort(ranking, kind="stable")[-k:]] = True
    return mask
