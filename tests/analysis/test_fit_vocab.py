"""The vocabulary axis: units, the joint L(N, d) law, per-d fits and the optimal d."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from analysis.powerlaw import fit_power_law
from analysis.synthetic import VOCAB_TRUTH, power_law_runs, vocab_runs
from analysis.validation import FitInputError
from analysis.vocab import PARAMETERS, best_bits, bits_per_image, bits_per_pixel, fit_per_bits, fit_vocab, vocab_loss

SIZES = np.geomspace(1e8, 5e9, 8)
BITS = [8, 12, 16, 24, 32, 48, 64]


@pytest.fixture(scope="module")
def runs():
    return vocab_runs(SIZES, BITS, noise=0.005, seed=1)


@pytest.fixture(scope="module")
def fit(runs):
    return fit_vocab(runs["params"], runs["bits"], runs["loss"], n_bootstrap=60, seed=3, holdout_largest=7)


def test_bits_per_image_is_a_d_independent_unit():
    assert bits_per_image(0.5, 32, 521) == pytest.approx(0.5 / math.log(2) * 32 * 521)
    # Same total code length: half the per-bit loss at twice the bits.
    assert bits_per_image(0.6, 16, 521) == pytest.approx(bits_per_image(0.3, 32, 521))
    assert bits_per_pixel(0.5, 32, 521, 256 * 256) == pytest.approx(bits_per_image(0.5, 32, 521) / 65536)


def test_joint_law_recovered_with_truth_inside_bootstrap_intervals(fit):
    assert fit.alpha == pytest.approx(VOCAB_TRUTH["alpha"], abs=0.03)
    assert fit.gamma == pytest.approx(VOCAB_TRUTH["gamma"], abs=0.03)
    assert fit.beta == pytest.approx(VOCAB_TRUTH["beta"], abs=0.15)
    for name in PARAMETERS:
        low, high = fit.intervals[name]
        assert low <= VOCAB_TRUTH[name] <= high, (name, fit.intervals[name])
    assert fit.goodness.r2 > 0.99
    assert fit.holdout.mean_abs_relative_error < 0.01


def test_optimal_bits_matches_brute_force_and_grows_with_model_size(fit):
    for params in [1e8, 1e9, 1e10]:
        brute = minimize_scalar(lambda log_d: fit.predict(params, np.exp(log_d)), bounds=(0, 8), method="bounded", options={"xatol": 1e-9})
        assert fit.continuous_optimal_bits(params) == pytest.approx(np.exp(brute.x), rel=1e-4)
    chosen = fit.optimal_bits([1.25e8, 2.2e9])
    assert chosen[0] <= 16 and chosen[1] >= 24
    candidates = np.array(BITS, dtype=float)
    assert fit.optimal_bits(2.2e9, candidates) == candidates[np.argmin(fit.predict(2.2e9, candidates))]
    true_optimum = [VOCAB_TRUTH["beta"] * VOCAB_TRUTH["B"] * n ** VOCAB_TRUTH["alpha"] / (VOCAB_TRUTH["gamma"] * VOCAB_TRUTH["A"]) for n in (1e8, 1e10)]
    true_d = np.power(true_optimum, 1 / (VOCAB_TRUTH["gamma"] + VOCAB_TRUTH["beta"]))
    np.testing.assert_allclose(fit.continuous_optimal_bits([1e8, 1e10]), true_d, rtol=0.15)


def test_per_bits_fits_and_best_bits():
    x = np.geomspace(1e8, 1e10, 10)
    small = power_law_runs(x, E=1.0, A=30.0, alpha=0.3, noise=0.002, seed=1)  # better for small models
    large = power_law_runs(x, E=0.9, A=100.0, alpha=0.3, noise=0.002, seed=2)  # better for large ones
    bits = np.repeat([16.0, 32.0], 10)
    loss = np.concatenate([small["loss"], large["loss"]])
    xs = np.concatenate([x, x])
    fits = fit_per_bits(bits, lambda rows: fit_power_law(xs[rows], loss[rows]))
    assert set(fits) == {16.0, 32.0}
    assert fits[16.0].alpha == pytest.approx(0.3, abs=0.05)
    winners = best_bits(fits, lambda f: f.predict(np.array([1e8, 1e10])))
    assert list(winners) == [16.0, 32.0]


def test_per_bits_names_the_group_that_fails():
    bits = np.array([16.0] * 6 + [32.0] * 2)
    x = np.geomspace(1, 100, 8)
    with pytest.raises(FitInputError, match="bits=32: the power-law form needs at least 4 points"):
        fit_per_bits(bits, lambda rows: fit_power_law(x[rows], 1 + 1 / x[rows]))


def test_vocab_loss_formula():
    assert vocab_loss(1e9, 16, E=0.1, A=2.0, alpha=0.5, gamma=1.0, B=3.0, beta=2.0) == pytest.approx(0.1 + 2 * 16 / 1e9**0.5 + 3 / 256)


class _KnownLaw:
    """A Chinchilla law with known parameters, standing in for a fitted one."""

    def __init__(self, **law):
        self.law = law

    def predict(self, params, tokens):
        from analysis.chinchilla import chinchilla_loss

        return chinchilla_loss(params, tokens, **self.law)

    def compute_optimal(self, compute):
        from analysis.chinchilla import compute_optimal_allocation

        return compute_optimal_allocation(compute, self.law["A"], self.law["B"], self.law["alpha"], self.law["beta"])


def test_compute_optimal_bits_picks_the_lower_compute_optimal_loss():
    from analysis.vocab import compute_optimal_bits

    d32 = _KnownLaw(E=1.0, A=100.0, B=100.0, alpha=0.3, beta=0.3)  # lower floor, reached late
    d16 = _KnownLaw(E=1.3, A=20.0, B=20.0, alpha=0.3, beta=0.3)  # better at small compute
    budgets = np.array([1e15, 1e26])
    chosen = compute_optimal_bits({16.0: d16, 32.0: d32}, budgets)
    assert list(chosen) == [16.0, 32.0]
