"""IsoFLOP profiles from budget branches: loss of each model size interpolated at shared compute budgets.

A sweep trains every size to the same *image* budgets, so sizes reach different compute and
no two runs share a budget. Each size with runs at two or more budgets gives a piecewise
linear log L(log C); at a set of target budgets C spanning the runs, every size whose runs
bracket C contributes (N, L(C)). Only budgets reached by at least three sizes are kept, so
each profile can hold a parabola (:mod:`analysis.isoflop` fits them). No extrapolation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SIZES = 3
MIN_BUDGETS_PER_SIZE = 2


@dataclass(frozen=True)
class Profiles:
    params: np.ndarray
    loss: np.ndarray
    compute: np.ndarray
    """One entry per (target budget, size); ``compute`` is the target budget."""
    sizes_with_budgets: int


def interpolated_profiles(params: np.ndarray, flops: np.ndarray, loss: np.ndarray, n_targets: int = 6) -> Profiles:
    """Profiles at ``n_targets`` log-spaced budgets over the compute range the sizes cover."""
    params, flops, loss = (np.asarray(v, dtype=float) for v in (params, flops, loss))
    curves = {}
    for size in np.unique(params):
        rows = params == size
        order = np.argsort(flops[rows])
        log_c, log_l = np.log(flops[rows][order]), np.log(loss[rows][order])
        if np.unique(log_c).size >= MIN_BUDGETS_PER_SIZE:
            curves[float(size)] = (log_c, log_l)
    empty = Profiles(np.array([]), np.array([]), np.array([]), len(curves))
    if len(curves) < MIN_SIZES:
        return empty
    low = min(c[0] for c, _ in curves.values())
    high = max(c[-1] for c, _ in curves.values())
    # Targets strictly inside the covered range, so the end budgets are bracketed by more than one size.
    targets = np.linspace(low, high, n_targets + 2)[1:-1]
    out_params, out_loss, out_compute = [], [], []
    for target in targets:
        covering = [(n, np.interp(target, log_c, log_l)) for n, (log_c, log_l) in curves.items() if log_c[0] <= target <= log_c[-1]]
        if len(covering) < MIN_SIZES:
            continue
        for n, log_loss in covering:
            out_params.append(n)
            out_loss.append(float(np.exp(log_loss)))
            out_compute.append(float(np.exp(target)))
    if not out_params:
        return empty
    return Profiles(np.array(out_params), np.array(out_loss), np.array(out_compute), len(curves))
