"""Log-sum-exp scaling-law models and their Huber objective, with analytic gradients.

Every parametric law in this package predicts the log-loss as a log-sum-exp of
terms that are each *linear* in the parameters::

    log L_hat = logsumexp_k z_k,    z_k = sum_j theta[i_kj] * f_kj

where ``f_kj`` is a per-point feature (``-log N``, ``log d``...) or the constant 1.
Chinchilla approach 3 is ``z = (a - alpha log N, b - beta log D, e)``, i.e.
``L = e^e + e^a / N^alpha + e^b / D^beta``.

The objective is ``sum_n w_n huber_delta(log L_hat_n - log L_n)`` (summed, not
averaged: with a mean the objective is tiny and optimizers stop early). It is
evaluated for a *batch* of parameter vectors at once, in row chunks sized to
stay in cache, so thousands of optimizer starts cost a few array passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Part = tuple[int, "np.ndarray | None"]
"""(parameter index, feature per point); feature None means the constant 1."""

_CHUNK_ROWS = 256


@dataclass(frozen=True)
class LseDesign:
    """The terms of a log-sum-exp law evaluated on one set of points."""

    terms: tuple[tuple[Part, ...], ...]
    n_params: int
    n_points: int

    def exponents(self, theta: np.ndarray) -> list[np.ndarray]:
        """z_k for a batch ``theta`` of shape (S, P): arrays broadcastable to (S, n)."""
        out = []
        for term in self.terms:
            z = None
            for index, feature in term:
                column = theta[:, index : index + 1]
                part = column if feature is None else column * feature
                z = part if z is None else z + part
            out.append(z)
        return out

    def log_predict(self, theta: np.ndarray) -> np.ndarray:
        """log L_hat for one parameter vector (P,) -> (n,), or a batch (S, P) -> (S, n)."""
        batch = np.atleast_2d(theta)
        zs = self.exponents(batch)
        peak = zs[0]
        for z in zs[1:]:
            peak = np.maximum(peak, z)
        total = sum(np.exp(z - peak) for z in zs)
        result = np.broadcast_to(np.log(total) + peak, (batch.shape[0], self.n_points))
        return result[0] if np.ndim(theta) == 1 else result


def huber(residual: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss: quadratic within +-delta, linear outside."""
    clipped = np.clip(residual, -delta, delta)
    return clipped * (residual - 0.5 * clipped)


class HuberLseObjective:
    """Summed Huber loss of log-residuals of an :class:`LseDesign`, batched over parameter vectors.

    Features are centred before use (their means fold into a per-row offset), so the
    per-point exponents are small numbers; this keeps float32 evaluation accurate.
    """

    def __init__(
        self, design: LseDesign, log_loss: np.ndarray, delta: float = 1e-3, *, mixed_precision: bool = False
    ) -> None:
        log_loss = np.asarray(log_loss, dtype=float)
        if log_loss.shape != (design.n_points,):
            raise ValueError(f"log_loss has shape {log_loss.shape}, expected ({design.n_points},)")
        self.design = design
        self.delta = float(delta)
        # Per-point arithmetic dominates the cost; in float32 it is ~2-4x faster and still
        # resolves residuals to ~1e-7, far below delta. Used to screen many starts, never
        # for a final fit.
        self.dtype = np.float32 if mixed_precision else np.float64
        self._log_loss = log_loss.astype(self.dtype)
        self._terms = [[self._centred(index, feature) for index, feature in term] for term in design.terms]

    def _centred(self, index: int, feature: np.ndarray | None) -> tuple[int, float, np.ndarray | None]:
        """(parameter index, feature mean, feature minus its mean); the constant 1 has mean 1 and no remainder."""
        if feature is None:
            return index, 1.0, None
        mean = float(np.mean(feature))
        return index, mean, (feature - mean).astype(self.dtype)

    def __call__(self, theta: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective (S,) and gradient (S, P) for ``theta`` (S, P); ``weights`` (S, n) or (n,) per point."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        values = np.empty(theta.shape[0])
        grads = np.empty_like(theta)
        for start in range(0, theta.shape[0], _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            chunk_weights = None
            if weights is not None:
                chunk_weights = weights if np.ndim(weights) == 1 else weights[rows]
            # Far-off trial points overflow to inf/nan; the optimizer rejects those steps.
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                values[rows], grads[rows] = self._evaluate(theta[rows], chunk_weights)
        return values, grads

    def _evaluate(self, theta: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        low = theta.astype(self.dtype)
        zs = []
        for term in self._terms:
            offset = np.zeros(theta.shape[0])
            z = None
            for index, mean, feature in term:
                offset += theta[:, index] * mean
                if feature is not None:
                    part = low[:, index : index + 1] * feature
                    z = part if z is None else z + part
            offset = offset.astype(self.dtype)[:, None]
            zs.append(offset if z is None else z + offset)
        peak = zs[0]
        for z in zs[1:]:
            peak = np.maximum(peak, z)
        exps = [np.exp(z - peak) for z in zs]
        total = exps[0]
        for e in exps[1:]:
            total = total + e
        residual = np.log(total) + peak - self._log_loss
        clipped = np.clip(residual, -self.delta, self.delta)
        loss = clipped * (residual - 0.5 * clipped)
        if weights is not None:
            loss *= weights
            clipped *= weights
        values = loss.sum(axis=1, dtype=np.float64)
        # d(huber)/dr = clip(r); d(log L_hat)/dz_k = softmax_k = exp_k / total.
        scaled = clipped / total
        grads = np.zeros_like(theta)
        for term, e in zip(self._terms, exps):
            term_grad = scaled * e
            if term_grad.shape != residual.shape:
                term_grad = np.broadcast_to(term_grad, residual.shape)
            term_sum = term_grad.sum(axis=1, dtype=np.float64)
            for index, mean, feature in term:
                grads[:, index] += term_sum * mean
                if feature is not None:
                    grads[:, index] += term_grad @ feature
        return values, grads
