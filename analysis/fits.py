"""Scaling-law fits: the public API of the fitting part of ``analysis``, in one place.

Modules, one job each:

* :mod:`analysis.powerlaw`   L(X) = E + A X^-alpha against any X, multi-start, bootstrap.
* :mod:`analysis.chinchilla` approach 3, L(N, D) = E + A/N^alpha + B/D^beta from the
  published 4,500-start grid; compute-optimal allocation.
* :mod:`analysis.isoflop`    approach 2, IsoFLOP parabolas and N* ~ C^a, D* ~ C^b.
* :mod:`analysis.vocab`      bits per token d: units, per-d fits, joint L(N, d), optimal d.
* :mod:`analysis.goodness`   R^2 in loss and log-loss, residuals, held-out error.
* :mod:`analysis.lse`, :mod:`analysis.lbfgs`, :mod:`analysis.multistart`: the shared
  machinery. Every parametric law is a log-sum-exp of terms linear in its parameters,
  fitted by a Huber loss (delta 1e-3) of log residuals summed over points, with an
  analytic gradient; all starts are optimized together by a batched numpy L-BFGS
  (float32 arithmetic for screening, float64 polish of the best distinct optima).
  The 4,500-start approach-3 fit on 250 points takes ~3 s on 2 cores
  (``python -m analysis.bench_fit``).
"""
from analysis.bootstrap import percentile_interval
from analysis.chinchilla import ChinchillaFit, chinchilla_loss, compute_optimal_allocation, fit_chinchilla, published_grid
from analysis.goodness import GoodnessOfFit, HoldoutResult, goodness_of_fit
from analysis.isoflop import BudgetOptimum, IsoFlopFit, fit_isoflop, group_budgets
from analysis.powerlaw import PowerLawFit, fit_power_law
from analysis.validation import FitInputError
from analysis.vocab import (
    VocabFit,
    best_bits,
    bits_per_image,
    bits_per_pixel,
    compute_optimal_bits,
    fit_per_bits,
    fit_vocab,
    vocab_loss,
)

__all__ = [
    "BudgetOptimum",
    "ChinchillaFit",
    "FitInputError",
    "GoodnessOfFit",
    "HoldoutResult",
    "IsoFlopFit",
    "PowerLawFit",
    "VocabFit",
    "best_bits",
    "bits_per_image",
    "bits_per_pixel",
    "chinchilla_loss",
    "compute_optimal_allocation",
    "compute_optimal_bits",
    "fit_chinchilla",
    "fit_isoflop",
    "fit_per_bits",
    "fit_power_law",
    "fit_vocab",
    "goodness_of_fit",
    "group_budgets",
    "percentile_interval",
    "published_grid",
    "vocab_loss",
]
