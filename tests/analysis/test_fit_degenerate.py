"""Fits whose parameters admit no compute-optimal allocation, and per-d laws that predict NaN."""
import dataclasses
import json
import math

import numpy as np

from analysis import report
from analysis.chinchilla import fit_chinchilla
from analysis.synthetic import chinchilla_runs
from analysis.vocab import best_bits


def test_G_is_nan_when_no_real_allocation_exists():
    runs = chinchilla_runs(40, seed=1)
    fit = fit_chinchilla(runs["params"], runs["tokens"], runs["loss"])
    assert math.isfinite(fit.G) and fit.G > 0
    no_data_term = dataclasses.replace(fit, beta=-0.2)  # alpha A / (beta B) < 0: a negative base
    assert math.isnan(no_data_term.G)
    record = report.to_dict(no_data_term)
    assert record["G"] is None
    json.dumps(report.json_safe(record), allow_nan=False)


def test_a_d_whose_law_predicts_nan_never_wins():
    predictions = {8: np.array([np.nan, 1.0, np.nan]), 16: np.array([2.0, 3.0, np.nan])}
    chosen = best_bits(predictions, lambda values: values)
    assert chosen[0] == 16 and chosen[1] == 8 and math.isnan(chosen[2])
