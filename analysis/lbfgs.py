"""L-BFGS run on many independent starting points at once (numpy, vectorized over starts).

Each start keeps its own limited-memory history and its own line search; the only
thing shared is the objective call, which evaluates every start still searching
in one batched pass. A start leaves the active set once it has converged, so the
work shrinks as starts finish.

The line search looks for a step meeting the Armijo condition, expanding the step
while the directional derivative is still steep (so linear, L1-like stretches of
a Huber objective are crossed quickly) and shrinking it by safeguarded quadratic
interpolation otherwise. Curvature pairs with s.y <= 0 are skipped, which keeps
the inverse-Hessian estimate positive definite.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""fun(x (s, P), rows (s,)) -> (values (s,), gradients (s, P)); rows are indices of the starts."""

_ARMIJO = 1e-4
_CURVATURE = 0.9
_EXPAND = 4.0
_MAX_STEP = 1e10


@dataclass
class BatchResult:
    x: np.ndarray
    fun: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    n_evaluations: int


def minimize_batched(
    fun: BatchObjective,
    x0: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 1000,
    ftol: float = 1e-10,
    gtol: float = 1e-9,
    max_line_search: int = 30,
) -> BatchResult:
    """Minimize ``fun`` from every row of ``x0`` (S, P) independently.

    A start stops when its relative decrease ``(f_old - f_new) / max(|f_old|, 1e-300)``
    falls below ``ftol``, its largest gradient component below ``gtol``, no step
    decreases it, or after ``max_iter`` iterations.
    """
    x = np.array(x0, dtype=float, copy=True)
    n_starts, n_params = x.shape
    all_rows = np.arange(n_starts)
    f, g = fun(x, all_rows)
    n_evaluations = n_starts
    s_hist = np.zeros((n_starts, memory, n_params))
    y_hist = np.zeros((n_starts, memory, n_params))
    rho = np.zeros((n_starts, memory))
    n_iter = np.zeros(n_starts, dtype=int)
    converged = np.zeros(n_starts, dtype=bool)
    active = all_rows[np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)]
    converged[np.setdiff1d(all_rows, active)] = True

    for _ in range(max_iter):
        if active.size == 0:
            break
        direction = _two_loop(g[active], s_hist[active], y_hist[active], rho[active])
        slope = np.einsum("ij,ij->i", g[active], direction)
        uphill = ~(slope < 0)
        if uphill.any():
            rows = active[uphill]
            rho[rows] = 0.0
            direction[uphill] = _steepest(g[rows])
            slope[uphill] = np.einsum("ij,ij->i", g[rows], direction[uphill])
        step, f_new, g_new, evaluations = _line_search(fun, x, f, g, active, direction, slope, max_line_search)
        n_evaluations += evaluations
        n_iter[active] += 1

        moved = step > 0
        failed = active[~moved]
        had_history = rho[failed].any(axis=1)
        rho[failed[had_history]] = 0.0  # retry from steepest descent before giving up
        converged[failed[~had_history]] = True

        rows = active[moved]
        s_new = step[moved, None] * direction[moved]
        y_new = g_new[moved] - g[rows]
        sy = np.einsum("ij,ij->i", s_new, y_new)
        yy = np.einsum("ij,ij->i", y_new, y_new)
        curved = sy > 1e-12 * np.maximum(yy, 1e-300)
        update = rows[curved]
        s_hist[update] = np.roll(s_hist[update], -1, axis=1)
        y_hist[update] = np.roll(y_hist[update], -1, axis=1)
        rho[update] = np.roll(rho[update], -1, axis=1)
        s_hist[update, -1] = s_new[curved]
        y_hist[update, -1] = y_new[curved]
        rho[update, -1] = 1.0 / sy[curved]

        decrease = f[rows] - f_new[moved]
        x[rows] += s_new
        f[rows] = f_new[moved]
        g[rows] = g_new[moved]
        done = (decrease <= ftol * np.maximum(np.abs(f[rows] + decrease), 1e-300)) | (np.abs(g[rows]).max(axis=1) <= gtol)
        converged[rows[done]] = True
        active = active[~converged[active] & (n_iter[active] < max_iter)]
    return BatchResult(x=x, fun=f, n_iter=n_iter, converged=converged, n_evaluations=n_evaluations)


def _steepest(g: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return -g / np.maximum(norm, 1e-300)


def _two_loop(g: np.ndarray, s_hist: np.ndarray, y_hist: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """-H g for each row; empty history slots have rho = 0 and contribute nothing."""
    q = g.copy()
    memory = rho.shape[1]
    alphas = np.empty_like(rho)
    for i in reversed(range(memory)):
        alphas[:, i] = rho[:, i] * np.einsum("ij,ij->i", s_hist[:, i], q)
        q -= alphas[:, i, None] * y_hist[:, i]
    newest_s, newest_y = s_hist[:, -1], y_hist[:, -1]
    has_history = rho[:, -1] > 0
    yy = np.einsum("ij,ij->i", newest_y, newest_y)
    gamma = np.where(has_history, np.einsum("ij,ij->i", newest_s, newest_y) / np.where(has_history, yy, 1.0), 0.0)
    # Without history the first step has unit length along -g, as in scipy's L-BFGS-B.
    gamma = np.where(has_history, gamma, 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300))
    r = gamma[:, None] * q
    for i in range(memory):
        beta = rho[:, i] * np.einsum("ij,ij->i", y_hist[:, i], r)
        r += s_hist[:, i] * (alphas[:, i] - beta)[:, None]
    return -r


def _line_search(
    fun: BatchObjective,
    x: np.ndarray,
    f: np.ndarray,
    g: np.ndarray,
    active: np.ndarray,
    direction: np.ndarray,
    slope: np.ndarray,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Step length per active start (0 where no acceptable step was found) and f, g there."""
    n = active.size
    trial = np.ones(n)
    accepted = np.zeros(n)
    f_new = f[active].copy()
    g_new = g[active].copy()
    searching = np.ones(n, dtype=bool)
    expanding = np.zeros(n, dtype=bool)
    evaluations = 0
    f0 = f[active]
    for _ in range(max_steps):
        idx = np.flatnonzero(searching)
        if idx.size == 0:
            break
        rows = active[idx]
        t = trial[idx]
        f_t, g_t = fun(x[rows] + t[:, None] * direction[idx], rows)
        evaluations += idx.size
        sufficient = np.isfinite(f_t) & (f_t <= f0[idx] + _ARMIJO * t * slope[idx]) & (f_t <= f_new[idx])
        # Keep the best Armijo point found so far.
        keep = idx[sufficient]
        accepted[keep] = t[sufficient]
        f_new[keep] = f_t[sufficient]
        g_new[keep] = g_t[sufficient]

        steep = np.einsum("ij,ij->i", g_t, direction[idx]) < _CURVATURE * slope[idx]
        grow = sufficient & steep & (t < _MAX_STEP)
        stop = (sufficient & ~grow) | (~sufficient & expanding[idx])
        shrink = ~sufficient & ~expanding[idx]

        searching[idx[stop]] = False
        expanding[idx[grow]] = True
        trial[idx[grow]] = t[grow] * _EXPAND
        # Safeguarded minimizer of the quadratic through f0, slope and f_t.
        t_s, f_s, s_s = t[shrink], f_t[shrink], slope[idx[shrink]]
        curvature = f_s - f0[idx[shrink]] - s_s * t_s
        with np.errstate(divide="ignore", invalid="ignore"):
            t_quad = -s_s * t_s**2 / (2.0 * curvature)
        t_quad = np.where(np.isfinite(t_quad) & (curvature > 0), t_quad, 0.5 * t_s)
        trial[idx[shrink]] = np.clip(t_quad, 0.1 * t_s, 0.5 * t_s)
    return accepted, f_new, g_new, evaluations
