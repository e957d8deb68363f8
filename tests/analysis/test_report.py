"""report: figures, fit tables, run table and headline from run directories, and how it degrades."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.run_errors import RunDataError
from analysis.validation import FitInputError
from analysis.scaling_report import FIGURES, write_report
from run_factory import Law, write_run, write_sweep

LAW = Law()


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    runs = tmp_path_factory.mktemp("sweep")
    write_sweep(runs, [1, 2, 3, 4, 6, 8], [8, 16], LAW, samples=True, seed=5)
    write_run(runs / "depth5_d16", depth=5, bits=16, images=8192, law=LAW, rng=np.random.default_rng(9), complete=False)
    out = tmp_path_factory.mktemp("report")
    return runs, out, write_report(runs, out, n_bootstrap=100)


def test_the_report_writes_every_file(full_report):
    _, out, result = full_report
    assert result.path == out / "report.html"
    page = result.path.read_text()
    for name in ("loss_vs_compute.png", "loss_vs_params.png", "vocab_bits_per_image.png", "bit_accuracy_per_scale.png"):
        assert (out / name).stat().st_size > 5_000 and f'src="{name}"' in page
    assert not (out / "isoflop.png").exists() and "IsoFLOP skipped" in page  # one budget per size
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).is_file(), src
    assert len(list((out / "samples").glob("*.png"))) == 12
    assert json.loads((out / "fits.json").read_text()) == result.fits
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 13 and set(table["status"]) == {"complete", "partial"}
    assert result.headline in page and "depth5_d16: partial (not complete)" in page


def test_the_headline_exponent_is_inside_its_interval_around_the_truth(full_report):
    _, _, result = full_report
    fit = result.fits["loss_vs_params"]["16"]
    assert fit["fitted"] and fit["n_points"] == 6  # the partial depth-5 run is left out
    low, high = fit["alpha_ci"]
    assert low < LAW.alpha < high and low < fit["alpha"] < high
    assert high - low < 0.1
    assert f"alpha = {fit['alpha']:.3g} [{low:.3g}, {high:.3g}]" in result.headline
    assert result.headline.startswith("val loss vs params (d=16, 6 sizes): L = E + A N^-alpha")


def test_the_vocabulary_comparison_finds_the_crossover(full_report):
    _, _, result = full_report
    best = pd.DataFrame(result.fits["best_bits_by_size"]).sort_values("params")
    # In the d-independent measure (mse_expected), d=8 is best for the smallest models and d=16 for the
    # largest (the law's crossover); bits per image would say d=8 everywhere it has fewer bits to code.
    assert result.fits["best_bits_measure"].startswith("mse_expected")
    assert best["best_d_observed"].iloc[0] == 8 and best["best_d_observed"].iloc[-1] == 16
    assert best["best_d_predicted"].iloc[0] == 8 and best["best_d_predicted"].iloc[-1] == 16
    assert set(best["best_d_predicted_by"]) == {"per-d power laws"}  # two values of d: no joint law
    assert not result.fits["vocab"]["fitted"] and "3 distinct values of bits" in result.fits["vocab"]["reason"]
    frontier = result.fits["compute_frontier"]["8"]
    assert frontier["fitted"] and frontier["x"] == "flops"


def test_few_runs_skip_what_they_cannot_support(tmp_path):
    runs = tmp_path / "runs"
    write_sweep(runs, [1, 2, 3], [8, 16], LAW)
    result = write_report(runs, tmp_path / "report", n_bootstrap=10)
    assert "not fitted" in result.headline and "needs at least 4 points, got 3" in result.headline
    assert result.fits["isoflop"]["16"]["fitted"] is False
    page = result.path.read_text()
    assert "IsoFLOP skipped" in page and "No run directory holds samples/final.png" in page
    assert (tmp_path / "report" / "loss_vs_params.png").is_file()  # the points are drawn even unfitted


def test_several_budgets_per_size_give_isoflop_profiles(tmp_path):
    runs = tmp_path / "runs"
    law = Law(B=4.0)  # a data term, so each budget has an interior optimum
    write_sweep(runs, [1, 2, 3, 4, 5, 6, 8], [16], law, budgets=[1024, 2048, 4096, 8192, 16384], seed=2)
    result = write_report(runs, tmp_path / "report", n_bootstrap=20)
    iso = result.fits["isoflop"]["16"]
    assert iso["fitted"] and len(iso["budgets"]) >= 2
    assert iso["a"] == pytest.approx(law.beta / (law.alpha + law.beta), abs=0.08)  # N_opt ~ C^(beta/(alpha+beta))
    assert (tmp_path / "report" / "isoflop.png").is_file()


def test_runs_with_nan_losses_are_left_out_with_a_note(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(4)
    for depth in (1, 2, 3, 4, 6):
        write_run(runs / f"depth{depth}_d16", depth=depth, bits=16, images=2048, law=LAW, rng=rng)
    write_run(runs / "depth8_d16", depth=8, bits=16, images=2048, law=LAW, rng=rng, nan_final=True)
    result = write_report(runs, tmp_path / "report", n_bootstrap=10)
    assert result.fits["loss_vs_params"]["16"]["n_points"] == 5
    assert any(note == "depth8_d16: diverged (not complete)" for note in result.fits["excluded_runs"])
    assert result.notes == ("run depth8_d16: diverged (final val_loss is nan); listed as diverged, left out of fits",)
    json.dumps(result.fits, allow_nan=False)


def test_runs_with_nothing_to_fit_still_give_a_report(tmp_path):
    runs = tmp_path / "runs"
    (runs / "tok_d16").mkdir(parents=True)
    (runs / "tok_d16" / "config.yaml").write_text("task: tokenizer\nname: tok_d16\ntokenizer:\n  d: 16\n")
    (runs / "tok_d16" / "metrics.jsonl").write_text('{"step": 10, "time": 1.0, "val/loss": 0.2, "val/psnr": 24.5}\n')
    (runs / "starting").mkdir()
    (runs / "starting" / "run.json").write_text('{"name": "starting"}')
    result = write_report(runs, tmp_path / "report", n_bootstrap=0)
    assert result.headline == "val loss vs params: not fitted (no complete transformer runs with finite losses)"
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.html", "results.csv", "fits.json"}
    assert "tok_d16: a tokenizer run" in result.fits["excluded_runs"]


def test_the_report_command(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_sweep(runs, [1, 2, 3, 4], [16], LAW)
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--bootstrap", "10"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("val loss vs params (d=16, 4 sizes): L = E + A N^-alpha, alpha = ")
    assert printed[1] == f"wrote {out / 'report.html'}"
    assert {p.name for p in out.iterdir()} >= {"report.html", "results.csv", "fits.json", *FIGURES} - {"isoflop.png"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda p: ["report", str(p / "none"), "--out", str(p / "r")], "no such runs folder"),
        (lambda p: ["report", str(_empty(p)), "--out", str(p / "r")], "no runs found under"),
        (lambda p: ["report", str(p), "--out", str(_file(p))], "it is a file"),
        (lambda p: ["report", str(p), "--out", str(p / "r"), "--bootstrap", "-1"], "--bootstrap must be >= 0"),
    ],
    ids=["missing runs dir", "no runs", "out is a file", "negative bootstrap"],
)
def test_bad_report_inputs_give_one_line(tmp_path, capsys, args, message):
    write_run(tmp_path / "depth1_d8", depth=1, bits=8, images=1024, law=LAW, rng=np.random.default_rng(0))
    assert main(args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_write_report_checks_its_arguments(tmp_path):
    with pytest.raises(FitInputError, match="--bootstrap must be >= 0"):
        write_report(tmp_path, tmp_path / "r", n_bootstrap=-2)
    with pytest.raises(RunDataError, match="no runs found"):
        write_report(tmp_path, tmp_path / "r")


def _empty(path):
    (path / "empty").mkdir()
    return path / "empty"


def _file(path):
    (path / "taken").write_text("")
    return path / "taken"


def test_a_sweep_whose_transformer_runs_never_started_still_gives_a_report(tmp_path):
    """As a sweep leaves it when its tokenizer jobs fail: tokenizer runs with a config and no metrics, no transformer run."""
    runs = tmp_path / "sweep"
    for name in ("d8", "d8_seed1"):
        (runs / "tokenizers" / name).mkdir(parents=True)
        (runs / "tokenizers" / name / "config.yaml").write_text(f"task: tokenizer\nname: {name}\ntokenizer:\n  d: 8\n")
    result = write_report(runs, tmp_path / "report", n_bootstrap=0)
    assert "not fitted" in result.headline
    assert (tmp_path / "report" / "report.html").is_file()
