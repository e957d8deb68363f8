"""Power law with a floor against any X: recovery, intervals, units, holdout."""
import numpy as np
import pytest

from analysis.powerlaw import fit_power_law
from analysis.synthetic import power_law_runs
from analysis.validation import FitInputError

CASES = {
    # X = parameters, model-size scaling like Infinity's 125M..4.7B sweep
    "params": ({"E": 0.40, "A": 20.0, "alpha": 0.30}, np.geomspace(1e7, 5e9, 14)),
    # X = training FLOPs, huge numbers
    "flops": ({"E": 1.70, "A": 3e7, "alpha": 0.35}, np.geomspace(1e19, 1e23, 16)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    truth, x = CASES[request.param]
    runs = power_law_runs(x, **truth, noise=0.004, seed=7)
    return truth, runs, fit_power_law(runs["x"], runs["loss"], n_bootstrap=60, seed=2, holdout_largest=3)


def test_recovers_parameters_with_truth_inside_bootstrap_intervals(case):
    truth, _, fit = case
    assert fit.alpha == pytest.approx(truth["alpha"], abs=0.03)
    assert fit.E == pytest.approx(truth["E"], rel=0.03)
    assert fit.A == pytest.approx(truth["A"], rel=0.5)
    for name, value in truth.items():
        low, high = fit.intervals[name]
        assert low <= value <= high, (name, fit.intervals[name])


def test_goodness_and_holdout(case):
    _, runs, fit = case
    assert fit.goodness.r2 > 0.99
    assert list(fit.holdout.indices) == [len(runs["x"]) - 3, len(runs["x"]) - 2, len(runs["x"]) - 1]
    assert fit.holdout.mean_abs_relative_error < 0.02
    np.testing.assert_allclose(fit.predict(runs["x"]), runs["loss"], rtol=0.02)


def test_pure_power_law_without_floor():
    runs = power_law_runs(np.geomspace(1e18, 1e22, 15), E=0.0, A=50.0, alpha=0.05, noise=0.002, seed=1)
    fit = fit_power_law(runs["x"], runs["loss"])
    assert fit.alpha == pytest.approx(0.05, abs=0.005)
    assert fit.E < 0.1 * fit.predict(1e22)


def test_rejects_too_few_points_and_constant_x():
    with pytest.raises(FitInputError, match="at least 4 points"):
        fit_power_law([1.0, 2.0, 3.0], [3.0, 2.0, 1.5])
    with pytest.raises(FitInputError, match="distinct values of x"):
        fit_power_law([5.0] * 6, [1.0, 1.1, 0.9, 1.0, 1.2, 1.05])
