"""Nonparametric bootstrap helpers: resample multiplicities and percentile intervals."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Interval = tuple[float, float]


def resample_weights(n_points: int, n_replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(n_replicates, n_points) multiplicities of points drawn n_points times with replacement."""
    return rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_replicates).astype(float)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> Interval:
    """Central percentile interval of the finite samples; (nan, nan) when there are none."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return (float(low), float(high))


def intervals(samples: Mapping[str, np.ndarray], level: float = 0.95) -> dict[str, Interval]:
    """Percentile interval for every named sample vector."""
    return {name: percentile_interval(values, level) for name, values in samples.items()}
