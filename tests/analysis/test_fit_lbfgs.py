"""The batched L-BFGS: every start converges on its own, matching a per-start optimizer."""
import numpy as np
from scipy.optimize import minimize, rosen, rosen_der

from analysis.lbfgs import minimize_batched


def _rosenbrock(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    value = 100.0 * (x[:, 1] - x[:, 0] ** 2) ** 2 + (1 - x[:, 0]) ** 2
    grad = np.stack([-400.0 * x[:, 0] * (x[:, 1] - x[:, 0] ** 2) - 2 * (1 - x[:, 0]), 200.0 * (x[:, 1] - x[:, 0] ** 2)], axis=1)
    return value, grad


def test_rosenbrock_from_many_starts():
    starts = np.random.default_rng(0).uniform(-2, 2, size=(64, 2))
    result = minimize_batched(_rosenbrock, starts, ftol=1e-14, gtol=1e-10)
    assert result.converged.all()
    np.testing.assert_allclose(result.x, 1.0, atol=1e-4)
    reference = minimize(rosen, starts[0], jac=rosen_der, method="L-BFGS-B")
    np.testing.assert_allclose(result.x[0], reference.x, atol=1e-4)


def test_each_start_finds_its_own_local_minimum():
    # f(x) = (x^2 - 1)^2 + 0.1 x has two basins; the start decides which one.
    def double_well(x, rows):
        return ((x[:, 0] ** 2 - 1) ** 2 + 0.1 * x[:, 0]), (4 * x[:, 0] * (x[:, 0] ** 2 - 1) + 0.1)[:, None]

    result = minimize_batched(double_well, np.array([[-2.0], [-0.3], [0.3], [2.0]]), ftol=1e-14)
    assert np.all(result.x[:2, 0] < -0.9) and np.all(result.x[2:, 0] > 0.9)
    assert result.fun[0] < result.fun[3]


def test_rows_identify_the_start_for_per_start_objectives():
    targets = np.arange(10.0)[:, None] * np.ones((1, 3))

    def shifted_quadratic(x, rows):
        diff = x - targets[rows]
        return 0.5 * np.sum(diff**2 * np.array([1.0, 10.0, 100.0]), axis=1), diff * np.array([1.0, 10.0, 100.0])

    result = minimize_batched(shifted_quadratic, np.zeros((10, 3)), ftol=1e-15, gtol=1e-10)
    np.testing.assert_allclose(result.x, targets, atol=1e-6)


def test_linear_stretches_are_crossed_by_expanding_steps():
    # |x - 1000| smoothed: far from the kink the objective is linear and the gradient constant.
    def smooth_abs(x, rows):
        d = x[:, 0] - 1000.0
        return np.sqrt(d**2 + 1e-4), (d / np.sqrt(d**2 + 1e-4))[:, None]

    result = minimize_batched(smooth_abs, np.zeros((1, 1)), ftol=1e-15, max_iter=200)
    assert abs(result.x[0, 0] - 1000.0) < 1e-2
    assert result.n_iter[0] < 60
