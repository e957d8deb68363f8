"""The vocabulary axis: d bits per token (vocabulary 2^d), per-d fits, a joint L(N, d) law, and units.

Units. The bitwise classifier reports a *per-bit* cross-entropy in nats. A token of
a d-bit tokenizer carries d bits, so per-bit losses of different d are not
comparable. :func:`bits_per_image` converts to the code length of a whole image,
``loss_per_bit / ln 2 * d * tokens_per_image`` (bits per image; 521 tokens at 256^2,
10,521 at 1024^2 with the 1:1 schedule), which has the same unit for every d; divide
by pixels for bits per pixel. Fit and compare laws across d in such a unit.

Joint form (a modelling choice, documented here)::

    L(N, d) = E + A d^gamma / N^alpha + B / d^beta

* ``A d^gamma / N^alpha``: the model-limited part. Each token of a larger vocabulary
  carries more bits to predict, so at fixed N the excess grows with d (gamma > 0);
  it shrinks with model size at the usual rate alpha.
* ``B / d^beta``: the vocabulary-limited part. A coarser code (small d) loses detail
  that no model size recovers (reconstruction gets better with d: rFID 1.22 at d=16,
  0.61 at d=32), so this floor falls with d.
* ``E``: what neither removes.

At fixed N, dL/dd = 0 gives d*(N) = (beta B N^alpha / (gamma A))^(1/(gamma+beta)):
the optimal vocabulary grows as N^(alpha/(gamma+beta)), the pattern Infinity reports
(d=16 beats d=32 at 125M and 361M, d=32 wins at 2.2B). The form is LSE(a + gamma log d
- alpha log N, b - beta log d, e), fitted exactly like approach 3 (Huber 1e-3 on log
residuals, summed, every start of a grid optimized), after scaling N, d and L by their
geometric means so one grid suits any units.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from analysis.chinchilla import ChinchillaFit
from analysis.law_fit import Holdout, LawFit, fit_law
from analysis.lse import LseDesign
from analysis.multistart import grid_starts
from analysis.validation import FitInputError, check_holdout, positive_array, require_distinct, require_points

FORM = "L(N, d) = E + A d^gamma / N^alpha + B / d^beta"
PARAMETERS = ("E", "A", "alpha", "gamma", "B", "beta")
MIN_POINTS = 8
_A, _B, _E, _ALPHA, _GAMMA, _BETA = range(6)  # theta = (a, b, e, alpha, gamma, beta), normalized units

FitT = TypeVar("FitT")


def bits_per_image(loss_per_bit: np.ndarray | float, bits: np.ndarray | float, tokens_per_image: float) -> np.ndarray:
    """Per-bit cross-entropy in nats -> code length of one image in bits (d-independent unit)."""
    return np.asarray(loss_per_bit, dtype=float) / math.log(2.0) * np.asarray(bits, dtype=float) * tokens_per_image


def bits_per_pixel(
    loss_per_bit: np.ndarray | float, bits: np.ndarray | float, tokens_per_image: float, pixels_per_image: float
) -> np.ndarray:
    return bits_per_image(loss_per_bit, bits, tokens_per_image) / pixels_per_image


def vocab_loss(
    params: np.ndarray | float, bits: np.ndarray | float, *, E: float, A: float, alpha: float, gamma: float, B: float, beta: float
) -> np.ndarray:
    params, bits = np.asarray(params, dtype=float), np.asarray(bits, dtype=float)
    return E + A * bits**gamma / params**alpha + B / bits**beta


def start_grid() -> np.ndarray:
    """2,304 starts (a, b, e, alpha, gamma, beta) for N, d and L scaled to geometric mean 1."""
    logs = (-4.0, -2.0, -1.0, 0.0)
    return grid_starts(logs, logs, (-3.0, -1.5, -0.5, -0.1), (0.1, 0.5, 1.0), (0.0, 0.5, 1.0), (0.0, 0.5, 1.0, 2.0))


@dataclass(frozen=True)
class VocabFit(LawFit):
    E: float
    A: float
    alpha: float
    gamma: float
    B: float
    beta: float
    bits_observed: tuple[float, ...]

    def predict(self, params: np.ndarray | float, bits: np.ndarray | float) -> np.ndarray:
        return vocab_loss(params, bits, **{name: getattr(self, name) for name in PARAMETERS})

    def continuous_optimal_bits(self, params: np.ndarray | float) -> np.ndarray:
        """d*(N) where dL/dd = 0; NaN when gamma or beta <= 0 (no interior optimum)."""
        params = np.asarray(params, dtype=float)
        if self.gamma <= 0 or self.beta <= 0:
            return np.full(params.shape, np.nan)
        return (self.beta * self.B * params**self.alpha / (self.gamma * self.A)) ** (1.0 / (self.gamma + self.beta))

    def optimal_bits(self, params: np.ndarray | float, candidates: np.ndarray | None = None) -> np.ndarray:
        """The candidate d (default: those observed) with the lowest predicted loss at each N."""
        options = np.asarray(self.bits_observed if candidates is None else candidates, dtype=float)
        params = np.asarray(params, dtype=float)
        losses = self.predict(params[..., None], options)
        return options[np.argmin(losses, axis=-1)]


@dataclass(frozen=True)
class _Scales:
    params_ref: float
    bits_ref: float
    loss_ref: float

    @classmethod
    def of(cls, params: np.ndarray, bits: np.ndarray, loss: np.ndarray) -> _Scales:
        return cls(*(float(np.exp(np.mean(np.log(v)))) for v in (params, bits, loss)))

    def design(self, params: np.ndarray, bits: np.ndarray) -> LseDesign:
        log_n, log_d = np.log(params / self.params_ref), np.log(bits / self.bits_ref)
        terms = (
            ((_A, None), (_ALPHA, -log_n), (_GAMMA, log_d)),
            ((_B, None), (_BETA, -log_d)),
            ((_E, None),),
        )
        return LseDesign(terms=terms, n_params=6, n_points=params.size)

    def named(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        alpha, gamma, beta = theta[:, _ALPHA], theta[:, _GAMMA], theta[:, _BETA]
        with np.errstate(over="ignore"):
            A = np.exp(theta[:, _A]) * self.loss_ref * self.params_ref**alpha / self.bits_ref**gamma
            B = np.exp(theta[:, _B]) * self.loss_ref * self.bits_ref**beta
        return {"E": np.exp(theta[:, _E]) * self.loss_ref, "A": A, "alpha": alpha, "gamma": gamma, "B": B, "beta": beta}


def fit_vocab(
    params: np.ndarray,
    bits: np.ndarray,
    loss: np.ndarray,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    ci: float = 0.95,
    holdout_largest: int = 0,
    delta: float = 1e-3,
) -> VocabFit:
    """Fit the joint L(N, d); ``loss`` must be in a d-independent unit (see :func:`bits_per_image`).

    ``holdout_largest=k`` refits without the k runs with the largest N and predicts them.
    """
    clock = time.perf_counter()
    params = positive_array("params", params)
    bits = positive_array("bits", bits, params.size)
    loss = positive_array("loss", loss, params.size)
    what = "the vocab form"
    require_points(params.size, MIN_POINTS, what)
    require_distinct("bits", bits, 3, what)
    require_distinct("params", params, 3, what)
    check_holdout(params.size, holdout_largest, MIN_POINTS, what)

    scales = _Scales.of(params, bits, loss)

    def predict_without(held: np.ndarray) -> np.ndarray:
        return fit_vocab(params[~held], bits[~held], loss[~held], delta=delta).predict(params[held], bits[held])

    point, common = fit_law(
        scales.design(params, bits), loss, scales.loss_ref, start_grid(), scales.named,
        lambda named: vocab_loss(params, bits, **named),
        n_bootstrap=n_bootstrap, seed=seed, ci=ci, delta=delta, started=clock,
        holdout=Holdout(holdout_largest, params, "params", predict_without),
    )
    return VocabFit(**point, **common, bits_observed=tuple(float(d) for d in np.unique(bits)))


def fit_per_bits(bits: np.ndarray, fit_group: Callable[[np.ndarray], FitT]) -> dict[float, FitT]:
    """One fit per distinct d: ``fit_group`` receives the boolean row mask of that d."""
    bits = np.asarray(bits, dtype=float)
    results: dict[float, FitT] = {}
    for d in np.unique(bits):
        try:
            results[float(d)] = fit_group(bits == d)
        except FitInputError as error:
            raise FitInputError(f"bits={d:g}: {error}") from None
    return results


def best_bits(fits: Mapping[float, FitT], predicted_loss: Callable[[FitT], np.ndarray]) -> np.ndarray:
    """For each evaluation point, the d whose fit predicts the lowest finite loss (NaN if none does).

    Losses must be in a d-independent unit. E.g. per-d power laws in N: ``best_bits(fits, lambda fit: fit.predict(params))``.
    """
    options = np.asarray(list(fits), dtype=float)
    losses = np.stack([np.asarray(predicted_loss(fits[d]), dtype=float) for d in options])
    finite = np.isfinite(losses)
    winners = options[np.argmin(np.where(finite, losses, np.inf), axis=0)]
    return np.where(finite.any(axis=0), winners, np.nan)  # a d whose law predicts NaN never wins


def compute_optimal_bits(fits: Mapping[float, ChinchillaFit], compute: np.ndarray | float) -> np.ndarray:
    """Per compute budget C, the d whose own law, at its own compute-optimal (N, D), predicts the lowest loss."""
    compute = np.asarray(compute, dtype=float)
    return best_bits(fits, lambda fit: fit.predict(*fit.compute_optimal(compute)))
