"""The pure power law L = c X^-alpha as a straight line in log-log space: least squares of log L on
log X, the Pearson r of the two logs, residuals, and a pairs-bootstrap interval of alpha.

With four model sizes a law with a floor (E + A X^-alpha, three parameters) leaves one degree of
freedom and its alpha is barely identified; the straight line has two parameters and says what the
data do say: whether and how steadily the loss falls with size. Resamples that draw fewer than two
distinct X have no slope and are dropped (their number is reported).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import Interval, percentile_interval, resample_weights
from analysis.validation import FitInputError, positive_array, require_distinct

FORM = "log L = log c - alpha log X"
MIN_POINTS = 3


@dataclass(frozen=True)
class LogLogFit:
    alpha: float
    coefficient: float
    r: float
    """Pearson correlation of log X and log L (-1: a perfect fall)."""
    log_residuals: tuple[float, ...]
    n_points: int
    alpha_interval: Interval
    n_bootstrap: int
    n_degenerate: int
    ci_level: float

    @property
    def interval_wider_than_estimate(self) -> bool:
        low, high = self.alpha_interval
        return bool(np.isfinite(low) and np.isfinite(high) and (high - low) > abs(self.alpha))

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.coefficient * np.asarray(x, dtype=float) ** -self.alpha

    def record(self) -> dict:
        return {
            "form": "loglog", "law": FORM, "alpha": self.alpha, "alpha_ci": list(self.alpha_interval), "c": self.coefficient,
            "r": self.r, "n_points": self.n_points, "log_residuals": list(self.log_residuals), "n_bootstrap": self.n_bootstrap,
            "n_degenerate_resamples": self.n_degenerate, "ci_level": self.ci_level,
            "interval_wider_than_estimate": self.interval_wider_than_estimate,
        }  # fmt: skip

    def text(self, x_name: str = "X") -> str:
        low, high = self.alpha_interval
        level = int(round(100 * self.ci_level))
        ci = f"[{low:.4g}, {high:.4g}] ({level}% CI, {self.n_bootstrap - self.n_degenerate} of {self.n_bootstrap} pairs-bootstrap resamples)" if self.n_bootstrap else "(no bootstrap)"
        lines = [
            f"Log-log line   {FORM}   (X = {x_name})",
            f"{self.n_points} points; alpha = {self.alpha:.4g} {ci}; c = {self.coefficient:.4g}; Pearson r (log-log) = {self.r:.4f}",
            "log residuals: " + ", ".join(f"{r:+.4f}" for r in self.log_residuals),
        ]
        if self.interval_wider_than_estimate:
            lines.append(f"WARNING: the interval of alpha ({high - low:.3g} wide) is wider than alpha itself ({self.alpha:.3g}): the exponent is not determined by these points")
        return "\n".join(lines)


def _line(log_x: np.ndarray, log_y: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted least squares slope and intercept."""
    w = weights / weights.sum()
    mx, my = float(w @ log_x), float(w @ log_y)
    sxx = float(w @ (log_x - mx) ** 2)
    if sxx <= 1e-12:
        return math.nan, math.nan
    slope = float(w @ ((log_x - mx) * (log_y - my))) / sxx
    return slope, my - slope * mx


def fit_loglog(x: np.ndarray, loss: np.ndarray, *, n_bootstrap: int = 0, seed: int = 0, ci: float = 0.95) -> LogLogFit:
    x = positive_array("x", x)
    loss = positive_array("loss", loss, x.size)
    if x.size < MIN_POINTS:
        raise FitInputError(f"the log-log line needs at least {MIN_POINTS} points, got {x.size}")
    require_distinct("x", x, 2, "the log-log line")
    log_x, log_y = np.log(x), np.log(loss)
    slope, intercept = _line(log_x, log_y, np.ones(x.size))
    r = float(np.corrcoef(log_x, log_y)[0, 1]) if np.std(log_y) > 0 else 0.0
    residuals = tuple(float(v) for v in log_y - (intercept + slope * log_x))
    slopes = []
    if n_bootstrap > 0:
        for weights in resample_weights(x.size, n_bootstrap, np.random.default_rng(seed)):
            s, _ = _line(log_x, log_y, weights)
            if np.isfinite(s):
                slopes.append(-s)
    interval = percentile_interval(np.asarray(slopes), ci) if slopes else (math.nan, math.nan)
    return LogLogFit(
        alpha=-slope, coefficient=float(math.exp(intercept)), r=r, log_residuals=residuals, n_points=int(x.size),
        alpha_interval=interval, n_bootstrap=n_bootstrap, n_degenerate=n_bootstrap - len(slopes), ci_level=ci,
    )
