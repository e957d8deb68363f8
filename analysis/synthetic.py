"""Runs generated from known laws with multiplicative log-normal noise (for tests and benchmarks)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from analysis.chinchilla import chinchilla_loss, compute_optimal_allocation
from analysis.vocab import vocab_loss

CHINCHILLA_TRUTH: Mapping[str, float] = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
"""The law reported by Hoffmann et al. (2022)."""

VOCAB_TRUTH: Mapping[str, float] = {"E": 0.30, "A": 60.0, "alpha": 0.30, "gamma": 0.50, "B": 3.7, "beta": 0.8}
"""An L(N, d) = E + A d^gamma / N^alpha + B / d^beta whose optimal d grows with N."""

Runs = dict[str, np.ndarray]


def _noisy(loss: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return loss * np.exp(noise * rng.standard_normal(loss.shape))


def chinchilla_runs(
    n_points: int = 250,
    *,
    truth: Mapping[str, float] = CHINCHILLA_TRUTH,
    noise: float = 0.01,
    seed: int = 0,
    params_range: tuple[float, float] = (1e7, 1e10),
    tokens_per_param_range: tuple[float, float] = (2.0, 200.0),
) -> Runs:
    """Runs with log-uniform N and log-uniform tokens-per-parameter ratio."""
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(*np.log(params_range), n_points))
    tokens = params * np.exp(rng.uniform(*np.log(tokens_per_param_range), n_points))
    loss = _noisy(chinchilla_loss(params, tokens, **truth), noise, rng)
    return {"params": params, "tokens": tokens, "flops": 6.0 * params * tokens, "loss": loss}


def power_law_runs(x: Sequence[float], *, E: float, A: float, alpha: float, noise: float = 0.01, seed: int = 0) -> Runs:
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float)
    return {"x": x, "loss": _noisy(E + A * x**-alpha, noise, rng)}


def isoflop_runs(
    budgets: Sequence[float],
    *,
    truth: Mapping[str, float] = CHINCHILLA_TRUTH,
    sizes_per_budget: int = 9,
    span: float = 16.0,
    guess_exponent: float = 0.5,
    noise: float = 0.005,
    seed: int = 0,
) -> Runs:
    """IsoFLOP sweeps: per budget, model sizes log-spaced over ``span`` around a practitioner's guess.

    The guess follows N ~ C^guess_exponent through the true optimum at the middle
    budget, so it is off-centre elsewhere, as it is in real sweeps.
    """
    rng = np.random.default_rng(seed)
    budgets = np.asarray(budgets, dtype=float)
    middle = np.sqrt(budgets.min() * budgets.max())
    anchor, _ = compute_optimal_allocation(middle, truth["A"], truth["B"], truth["alpha"], truth["beta"])
    rows = []
    for budget in budgets:
        centre = anchor * (budget / middle) ** guess_exponent
        params = centre * np.exp(np.linspace(-0.5, 0.5, sizes_per_budget) * np.log(span))
        tokens = budget / (6.0 * params)
        rows.append((params, tokens, np.full_like(params, budget)))
    params, tokens, flops = (np.concatenate(parts) for parts in zip(*rows))
    loss = _noisy(chinchilla_loss(params, tokens, **truth), noise, rng)
    return {"params": params, "tokens": tokens, "flops": flops, "loss": loss}


def vocab_runs(
    params: Sequence[float],
    bits: Sequence[int],
    *,
    truth: Mapping[str, float] = VOCAB_TRUTH,
    noise: float = 0.005,
    seed: int = 0,
) -> Runs:
    """Every combination of model size and bits per token."""
    rng = np.random.default_rng(seed)
    grid_params, grid_bits = (a.ravel() for a in np.meshgrid(np.asarray(params, float), np.asarray(bits, float)))
    loss = _noisy(vocab_loss(grid_params, grid_bits, **truth), noise, rng)
    return {"params": grid_params, "bits": grid_bits, "loss": loss}
