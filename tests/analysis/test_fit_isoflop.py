"""Chinchilla approach 2 (IsoFLOP): budgets, parabola vertices, exponents and their intervals."""
import numpy as np
import pytest

from analysis.isoflop import fit_isoflop, fit_parabola, group_budgets
from analysis.synthetic import CHINCHILLA_TRUTH, isoflop_runs
from analysis.validation import FitInputError

TRUE_A = CHINCHILLA_TRUTH["beta"] / (CHINCHILLA_TRUTH["alpha"] + CHINCHILLA_TRUTH["beta"])
BUDGETS = np.geomspace(1e18, 1e22, 9)


@pytest.fixture(scope="module")
def runs():
    runs = isoflop_runs(BUDGETS, seed=0)
    # Real runs miss their nominal budget slightly.
    runs["flops"] = runs["flops"] * np.exp(np.random.default_rng(1).uniform(-0.03, 0.03, runs["flops"].size))
    return runs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_compute_optimal_exponent(seed):
    runs = isoflop_runs(BUDGETS, seed=seed)
    fit = fit_isoflop(runs["params"], runs["loss"], flops=runs["flops"], n_bootstrap=200, seed=seed)
    assert len(fit.budgets) == 9
    assert fit.params_exponent == pytest.approx(TRUE_A, abs=0.01)
    assert fit.params_exponent + fit.tokens_exponent == pytest.approx(1.0)  # D* = C / (6 N*)
    low, high = fit.intervals["params_exponent"]
    assert low <= TRUE_A <= high
    assert fit.r2_params > 0.99


def test_budgets_grouped_with_tolerance(runs):
    assert np.unique(group_budgets(runs["flops"], tolerance=0.1)).size == 9
    assert np.unique(group_budgets(runs["flops"], tolerance=0.001)).size > 9
    fit = fit_isoflop(runs["params"], runs["loss"], flops=runs["flops"])
    assert [b.n_runs for b in fit.budgets] == [9] * 9
    np.testing.assert_allclose([b.compute for b in fit.budgets], BUDGETS, rtol=0.03)


def test_tokens_from_compute_or_from_their_own_parabola(runs):
    from_compute = fit_isoflop(runs["params"], runs["loss"], tokens=runs["tokens"])
    from_parabola = fit_isoflop(runs["params"], runs["loss"], tokens=runs["tokens"], tokens_from="parabola")
    for b in from_compute.budgets:
        assert 6 * b.params_opt * b.tokens_opt == pytest.approx(b.compute)
    assert from_parabola.tokens_exponent == pytest.approx(1 - TRUE_A, abs=0.02)
    assert from_compute.optimal_params(1e20) == pytest.approx(from_compute.params_coefficient * 1e20**from_compute.params_exponent)


def test_holdout_predicts_the_largest_budgets(runs):
    fit = fit_isoflop(runs["params"], runs["loss"], flops=runs["flops"], holdout_largest=2)
    assert fit.holdout.k == 2
    np.testing.assert_allclose(fit.holdout.compute, BUDGETS[-2:], rtol=0.03)
    np.testing.assert_allclose(fit.holdout.params_ratio, 1.0, atol=0.25)


def test_unusable_budgets_are_skipped_and_reported(runs):
    params = np.concatenate([runs["params"], [1e8, 1e8, 2e8]])
    loss = np.concatenate([runs["loss"], [3.0, 3.1, 2.9]])
    flops = np.concatenate([runs["flops"], [1e25] * 3])
    fit = fit_isoflop(params, loss, flops=flops)
    assert len(fit.budgets) == 9
    assert fit.skipped == ("C=1e+25: 2 distinct model sizes",)


def test_too_few_budgets_is_an_input_error():
    runs = isoflop_runs([1e19], seed=0)
    with pytest.raises(FitInputError, match="at least 2 compute budgets"):
        fit_isoflop(runs["params"], runs["loss"], flops=runs["flops"])
    with pytest.raises(FitInputError, match="flops or tokens"):
        fit_isoflop(runs["params"], runs["loss"])


def test_fit_parabola_is_exact_on_a_parabola_and_batches():
    x = np.linspace(-2, 2, 7)
    y = 1.0 - 0.5 * x + 2.0 * x**2
    np.testing.assert_allclose(fit_parabola(x, y), [1.0, -0.5, 2.0], atol=1e-12)
    np.testing.assert_allclose(fit_parabola(x, np.stack([y, 2 * y])), [[1.0, -0.5, 2.0], [2.0, -1.0, 4.0]], atol=1e-12)
