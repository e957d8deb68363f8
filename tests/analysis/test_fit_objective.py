"""The Huber log-sum-exp objective: analytic gradient vs finite differences, batching, precision."""
import numpy as np
import pytest

from analysis.chinchilla import chinchilla_design, published_grid
from analysis.lse import HuberLseObjective, huber
from analysis.synthetic import chinchilla_runs, vocab_runs
from analysis.vocab import _Scales as VocabScales


def _central_differences(objective: HuberLseObjective, theta: np.ndarray, weights=None, step: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(theta)
    for j in range(theta.size):
        shift = np.zeros_like(theta)
        shift[j] = step
        up, _ = objective(theta + shift, weights)
        down, _ = objective(theta - shift, weights)
        grad[j] = (up[0] - down[0]) / (2 * step)
    return grad


@pytest.fixture(scope="module")
def chinchilla_objective() -> HuberLseObjective:
    runs = chinchilla_runs(60, seed=5)
    return HuberLseObjective(chinchilla_design(runs["params"], runs["tokens"]), np.log(runs["loss"]), delta=1e-3)


@pytest.mark.parametrize(
    "theta",
    [
        [6.0, 6.1, 0.5, 0.34, 0.28],  # near the optimum: many residuals inside the quadratic zone
        [10.0, 5.0, -1.0, 0.5, 1.5],  # a grid-like start far from it
        [2.0, 20.0, 1.0, 0.1, 0.9],
    ],
)
def test_gradient_matches_finite_differences(chinchilla_objective, theta):
    theta = np.array(theta)
    _, grad = chinchilla_objective(theta)
    numeric = _central_differences(chinchilla_objective, theta)
    np.testing.assert_allclose(grad[0], numeric, rtol=1e-4, atol=1e-9)


def test_weighted_gradient_matches_finite_differences(chinchilla_objective):
    weights = np.random.default_rng(0).multinomial(60, np.full(60, 1 / 60)).astype(float)
    theta = np.array([6.0, 6.1, 0.5, 0.34, 0.28])
    _, grad = chinchilla_objective(theta, weights)
    np.testing.assert_allclose(grad[0], _central_differences(chinchilla_objective, theta, weights), rtol=1e-4, atol=1e-9)


def test_vocab_design_gradient_matches_finite_differences():
    runs = vocab_runs(np.geomspace(1e8, 1e10, 5), [8, 16, 32, 64], seed=2)
    scales = VocabScales.of(runs["params"], runs["bits"], runs["loss"])
    objective = HuberLseObjective(scales.design(runs["params"], runs["bits"]), np.log(runs["loss"] / scales.loss_ref))
    theta = np.array([-1.0, -2.0, -0.5, 0.4, 0.3, 0.7])
    np.testing.assert_allclose(objective(theta)[1][0], _central_differences(objective, theta), rtol=1e-4, atol=1e-9)


def test_value_is_the_summed_huber_of_log_residuals(chinchilla_objective):
    theta = np.array([6.0, 6.1, 0.5, 0.34, 0.28])
    residuals = chinchilla_objective.design.log_predict(theta) - np.log(chinchilla_runs(60, seed=5)["loss"])
    assert chinchilla_objective(theta)[0][0] == pytest.approx(huber(residuals, 1e-3).sum(), rel=1e-12)


def test_huber_is_quadratic_inside_and_linear_outside():
    r = np.array([-0.5, -1e-3, 5e-4, 2e-3])
    np.testing.assert_allclose(huber(r, 1e-3), [1e-3 * (0.5 - 5e-4), 5e-7, 1.25e-7, 1e-3 * (2e-3 - 5e-4)])


def test_batch_rows_are_independent_and_mixed_precision_is_close(chinchilla_objective):
    grid = published_grid()[::97]
    values, grads = chinchilla_objective(grid)
    single = np.array([chinchilla_objective(row)[0][0] for row in grid[:5]])
    np.testing.assert_allclose(values[:5], single, rtol=1e-12)
    mixed = HuberLseObjective(chinchilla_objective.design, chinchilla_objective._log_loss, mixed_precision=True)
    mixed_values, mixed_grads = mixed(grid)
    np.testing.assert_allclose(mixed_values, values, rtol=1e-4)
    np.testing.assert_allclose(mixed_grads, grads, rtol=1e-3, atol=1e-6 * np.abs(grads).max())
