"""Power law with an irreducible floor, L(X) = E + A X^-alpha, against any X (params, tokens, compute).

Fitted like approach 3: log L = LSE(a - alpha log X, e), Huber loss (delta 1e-3) of
log residuals summed over points, every start of a grid optimized (see
:mod:`analysis.multistart`). X and L are first divided by their geometric means so
that one start grid suits any units (X = 1e8 parameters or 1e22 FLOPs alike);
A and E are reported back in the input units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from analysis.law_fit import Holdout, LawFit, fit_law
from analysis.lse import LseDesign
from analysis.multistart import grid_starts
from analysis.validation import check_holdout, positive_array, require_distinct, require_points

FORM = "L(X) = E + A X^-alpha"
PARAMETERS = ("E", "A", "alpha")
MIN_POINTS = 4
_A, _E, _ALPHA = range(3)  # positions in theta = (a, e, alpha), in normalized units


def start_grid() -> np.ndarray:
    """216 starts (a, e, alpha) for X and L scaled to geometric mean 1 (so E/L_ref < 1, e < 0)."""
    return grid_starts(
        (-6.0, -4.0, -2.0, -1.0, -0.5, 0.0),
        (-4.0, -2.0, -1.0, -0.5, -0.2, -0.05),
        (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    )


@dataclass(frozen=True)
class PowerLawFit(LawFit):
    E: float
    A: float
    alpha: float

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.E + self.A * np.asarray(x, dtype=float) ** -self.alpha


@dataclass(frozen=True)
class _Scales:
    x_ref: float
    loss_ref: float

    @classmethod
    def of(cls, x: np.ndarray, loss: np.ndarray) -> _Scales:
        return cls(float(np.exp(np.mean(np.log(x)))), float(np.exp(np.mean(np.log(loss)))))

    def design(self, x: np.ndarray) -> LseDesign:
        terms = (((_A, None), (_ALPHA, -np.log(x / self.x_ref))), ((_E, None),))
        return LseDesign(terms=terms, n_params=3, n_points=x.size)

    def named(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        alpha = theta[:, _ALPHA]
        with np.errstate(over="ignore"):
            A = np.exp(theta[:, _A]) * self.loss_ref * self.x_ref**alpha
        return {"E": np.exp(theta[:, _E]) * self.loss_ref, "A": A, "alpha": alpha}


def fit_power_law(
    x: np.ndarray,
    loss: np.ndarray,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    ci: float = 0.95,
    holdout_largest: int = 0,
    delta: float = 1e-3,
) -> PowerLawFit:
    """Fit L = E + A x^-alpha; ``holdout_largest=k`` refits without the k largest x and predicts them."""
    clock = time.perf_counter()
    x = positive_array("x", x)
    loss = positive_array("loss", loss, x.size)
    what = "the power-law form"
    require_points(x.size, MIN_POINTS, what)
    require_distinct("x", x, 3, what)
    check_holdout(x.size, holdout_largest, MIN_POINTS, what)

    scales = _Scales.of(x, loss)

    def predict_without(held: np.ndarray) -> np.ndarray:
        return fit_power_law(x[~held], loss[~held], delta=delta).predict(x[held])

    point, common = fit_law(
        scales.design(x), loss, scales.loss_ref, start_grid(), scales.named,
        lambda named: named["E"] + named["A"] * x ** -named["alpha"],
        n_bootstrap=n_bootstrap, seed=seed, ci=ci, delta=delta, started=clock,
        holdout=Holdout(holdout_largest, x, "x", predict_without),
    )
    return PowerLawFit(**point, **common)
