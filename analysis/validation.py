"""Input checks shared by the fitters; each failure is one readable sentence."""
from __future__ import annotations

import numpy as np


class FitInputError(ValueError):
    """The data cannot be fitted as given (bad values, too few points)."""


def positive_array(name: str, values: object, length: int | None = None) -> np.ndarray:
    """``values`` as a 1-D float array of finite positive numbers, or a FitInputError naming the problem."""
    array = np.asarray(values, dtype=float).reshape(-1)
    if length is not None and array.size != length:
        raise FitInputError(f"{name} has {array.size} values, expected {length}")
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        where = ", ".join(str(i) for i in np.flatnonzero(bad)[:10])
        raise FitInputError(f"{name} has {int(bad.sum())} non-positive or non-finite values (at indices {where})")
    return array


def require_points(count: int, minimum: int, what: str) -> None:
    if count < minimum:
        raise FitInputError(f"{what} needs at least {minimum} points, got {count}")


def require_distinct(name: str, values: np.ndarray, minimum: int, what: str) -> None:
    distinct = np.unique(values).size
    if distinct < minimum:
        raise FitInputError(f"{what} needs at least {minimum} distinct values of {name}, got {distinct}")


def check_holdout(n_points: int, holdout: int, minimum: int, what: str) -> None:
    if holdout < 0:
        raise FitInputError(f"holdout must be >= 0, got {holdout}")
    if holdout and n_points - holdout < minimum:
        raise FitInputError(
            f"{what} with {holdout} held out leaves {n_points - holdout} points; it needs at least {minimum}"
        )
