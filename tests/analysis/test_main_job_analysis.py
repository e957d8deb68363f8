"""The main job's statistics: the log-log line with its bootstrap interval and warning, seed replicates
(spread shown, never fitted), and the vocabulary analysis in the d-independent measure."""
import numpy as np
import pandas as pd
import pytest

from analysis.fit_command import FitRequest, run_fit, vocab_loss_column
from analysis.loglog import fit_loglog
from analysis.report import _parameter_table, interval_wider_than_estimate
from analysis.results import collect_results, write_results_csv
from analysis.results import fit_rows
from analysis.scaling_analysis import FitResult, best_bits_by_size, largest_budget_per_size, seed_spread
from analysis.validation import FitInputError
from run_factory import Law, write_run, write_sweep

LAW3 = Law(
    E={8: 0.50, 16: 0.10, 32: 0.05}, A={8: 30.0, 16: 26.3, 32: 25.0},
    mse_E={8: 0.06, 16: 0.04, 32: 0.03}, mse_A={8: 1.0, 16: 2.54, 32: 6.0},
)  # fmt: skip


def test_the_log_log_line_recovers_a_slope_and_warns_when_undetermined():
    x = np.array([1e5, 4e5, 1.6e6, 6.4e6])
    rng = np.random.default_rng(0)
    fit = fit_loglog(x, 300 * x**-0.05 * np.exp(0.002 * rng.standard_normal(4)), n_bootstrap=200)
    assert fit.alpha == pytest.approx(0.05, abs=0.01) and fit.r < -0.95 and fit.n_points == 4
    low, high = fit.alpha_interval
    assert low < fit.alpha < high and not fit.interval_wider_than_estimate and "WARNING" not in fit.text()
    flat = fit_loglog(x, 300 * np.exp(0.05 * rng.standard_normal(4)), n_bootstrap=200)
    assert flat.interval_wider_than_estimate and "WARNING: the interval of alpha" in flat.text()
    with pytest.raises(FitInputError, match="at least 3 points"):
        fit_loglog(x[:2], x[:2])


def test_fit_tables_flag_intervals_wider_than_the_estimate():
    assert interval_wider_than_estimate(0.3, (0.2, 0.45)) is False
    assert interval_wider_than_estimate(0.3, (-0.2, 0.9)) is True
    assert interval_wider_than_estimate(0.3, (float("nan"), float("nan"))) is False
    lines = _parameter_table([("alpha", 0.3, (-0.2, 0.9)), ("E", 1.0, (0.9, 1.1))], 0.95, 100)
    assert "(wider than the estimate)" in lines[1] and lines[-1].startswith("  WARNING: the interval of alpha")


def test_seed_replicates_give_a_spread_and_stay_out_of_the_fits(tmp_path):
    runs = tmp_path / "runs"
    write_sweep(runs, [1, 2, 3, 4], [8, 16, 32], LAW3, seed=3)
    rng = np.random.default_rng(11)
    for d in (8, 16, 32):
        write_run(runs / f"depth1_d{d}_seed1", depth=1, bits=d, images=8192, law=Law(noise=0.02, **_law_dicts()), rng=rng, seed=1)
    table = collect_results(runs)
    assert sorted(table["seed"].unique()) == [0, 1]
    rows, excluded = fit_rows(table, ("params_non_embedding", "val_loss", "train_flops", "d"))
    assert len(rows) == 12 and sum("a seed replicate (seed 1)" in note for note in excluded) == 3
    spread = seed_spread(table).set_index("d")
    assert list(spread.index) == [8, 16, 32] and (spread["seeds"] == 2).all() and (spread["bits_per_image_spread"] > 0).all()
    assert (spread["depth"] == 1).all()

    # the best d per size uses the d-independent measure (lowest mse_expected)
    groups = {float(d): largest_budget_per_size(g) for d, g in rows.assign(bits=rows["d"]).groupby("d")}
    best = best_bits_by_size(groups, FitResult("joint law", None)).sort_values("params")
    truth = [min((8, 16, 32), key=lambda d: LAW3.mse(n, d)) for n in best["params"]]
    assert truth[0] == 8 and truth[-1] == 16  # the crossover lies inside the sampled sizes
    assert list(best["best_d_observed"]) == truth and set(best["best_d_predicted_by"]) == {"no law"}

    csv = write_results_csv(table, tmp_path / "results.csv")
    outcome = run_fit(FitRequest(csv=str(csv), form="vocab", n_bootstrap=0))
    assert outcome.record["n_points"] == 12 and outcome.record["loss_unit"].startswith("mse_expected")
    assert outcome.record["optimal_bits"][0]["best_observed_bits"] == 8
    assert sum("seed replicate" in reason for reason in outcome.record["rows_dropped"]) == 3
    named = FitRequest(csv=str(csv), form="vocab", named_columns=frozenset({"loss"}))
    assert vocab_loss_column(named, table) is None  # --loss-col given: that column, as given


def _law_dicts() -> dict:
    return {"E": LAW3.E, "A": LAW3.A, "mse_E": LAW3.mse_E, "mse_A": LAW3.mse_A}
