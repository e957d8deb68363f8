"""Chinchilla approach 3: recovery of a known law, intervals, allocation, holdout, robustness."""
import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from analysis.chinchilla import (
    PARAMETERS,
    chinchilla_design,
    chinchilla_loss,
    compute_optimal_allocation,
    fit_chinchilla,
    published_grid,
)
from analysis.lse import HuberLseObjective
from analysis.synthetic import CHINCHILLA_TRUTH, chinchilla_runs
from analysis.validation import FitInputError

TRUTH = CHINCHILLA_TRUTH


@pytest.fixture(scope="module")
def runs():
    return chinchilla_runs(250, noise=0.01, seed=0)


@pytest.fixture(scope="module")
def fit(runs):
    return fit_chinchilla(runs["params"], runs["tokens"], runs["loss"], n_bootstrap=40, seed=1, holdout_largest=5)


def test_published_grid_has_4500_starts():
    grid = published_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(grid[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2]


def test_recovers_parameters_with_truth_inside_bootstrap_intervals(fit):
    assert fit.n_starts == 4500
    assert fit.alpha == pytest.approx(TRUTH["alpha"], abs=0.02)
    assert fit.beta == pytest.approx(TRUTH["beta"], abs=0.02)
    assert fit.E == pytest.approx(TRUTH["E"], rel=0.03)
    assert fit.A == pytest.approx(TRUTH["A"], rel=0.3)
    assert fit.B == pytest.approx(TRUTH["B"], rel=0.3)
    for name in PARAMETERS:
        low, high = fit.intervals[name]
        assert low <= TRUTH[name] <= high, (name, fit.intervals[name])
        assert low <= getattr(fit, name) <= high
    true_exponent = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    assert fit.intervals["params_exponent"][0] <= true_exponent <= fit.intervals["params_exponent"][1]


def test_goodness_of_fit_and_holdout(fit, runs):
    assert fit.goodness.r2 > 0.99 and fit.goodness.r2_log > 0.99
    assert fit.goodness.rmse_log == pytest.approx(0.01, rel=0.2)  # the noise level
    assert fit.goodness.log_residuals.shape == (250,)
    compute = 6 * runs["params"] * runs["tokens"]
    assert set(fit.holdout.indices) == set(np.argsort(compute)[-5:])
    assert fit.holdout.mean_abs_relative_error < 0.03


def test_best_of_all_starts_is_at_least_as_good_as_scipy_from_grid_starts(fit, runs):
    objective = HuberLseObjective(chinchilla_design(runs["params"], runs["tokens"]), np.log(runs["loss"] / np.exp(np.mean(np.log(runs["loss"])))))
    grid = published_grid()

    def scalar(theta):
        value, grad = objective(theta)
        return value[0], grad[0]

    reference = min(minimize(scalar, grid[i], jac=True, method="L-BFGS-B").fun for i in range(0, 4500, 1125))
    assert fit.objective <= reference * (1 + 1e-9)
    assert fit.n_reached_best >= 1


def test_compute_optimal_allocation_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        E, A, B = rng.uniform(1, 2), rng.uniform(50, 1000), rng.uniform(50, 1000)
        alpha, beta = rng.uniform(0.2, 0.6, size=2)
        compute = 10 ** rng.uniform(18, 25)
        best = minimize_scalar(
            lambda log_n: chinchilla_loss(np.exp(log_n), compute / (6 * np.exp(log_n)), E, A, B, alpha, beta),
            bounds=(np.log(1e3), np.log(compute / 6 / 1e3)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        params_opt, tokens_opt = compute_optimal_allocation(compute, A, B, alpha, beta)
        assert np.log(params_opt) == pytest.approx(best.x, abs=1e-4)
        assert 6 * params_opt * tokens_opt == pytest.approx(compute)


def test_fit_allocation_uses_fitted_exponents(fit):
    params_small, _ = fit.compute_optimal(1e20)
    params_large, tokens_large = fit.compute_optimal(1e22)
    assert np.log(params_large / params_small) / np.log(100) == pytest.approx(fit.params_exponent)
    assert fit.params_exponent + fit.tokens_exponent == pytest.approx(1.0)
    assert 6 * params_large * tokens_large == pytest.approx(1e22)


def test_invariant_to_the_units_of_loss(fit, runs):
    in_bits_per_image = fit_chinchilla(runs["params"], runs["tokens"], runs["loss"] * 5000.0)
    assert in_bits_per_image.alpha == pytest.approx(fit.alpha, rel=1e-4)
    assert in_bits_per_image.beta == pytest.approx(fit.beta, rel=1e-4)
    assert in_bits_per_image.E == pytest.approx(5000.0 * fit.E, rel=1e-4)


def test_rejects_bad_input():
    runs = chinchilla_runs(10, seed=0)
    with pytest.raises(FitInputError, match="at least 6 points"):
        fit_chinchilla(runs["params"][:5], runs["tokens"][:5], runs["loss"][:5])
    bad = runs["loss"].copy()
    bad[[2, 7]] = [np.nan, -1.0]
    with pytest.raises(FitInputError, match=r"loss has 2 non-positive or non-finite values \(at indices 2, 7\)"):
        fit_chinchilla(runs["params"], runs["tokens"], bad)
    with pytest.raises(FitInputError, match="held out"):
        fit_chinchilla(runs["params"], runs["tokens"], runs["loss"], holdout_largest=6)
