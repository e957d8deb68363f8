"""infinity-analyze fit: round trips through CSV and JSON, column overrides, and one-line errors."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.synthetic import CHINCHILLA_TRUTH, chinchilla_runs, isoflop_runs, power_law_runs, vocab_runs


@pytest.fixture(scope="module")
def chinchilla_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.csv"
    pd.DataFrame(chinchilla_runs(150, noise=0.01, seed=11)).to_csv(path, index=False)
    return path


def test_chinchilla_round_trip_through_the_console(cli, chinchilla_csv, tmp_path):
    out = tmp_path / "fit.json"
    result = cli("analysis.cli", "fit", "--csv", str(chinchilla_csv), "--form", "chinchilla", "--bootstrap", "20", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for word in ("alpha", "beta", "95% CI", "R^2", "fit wall time"):
        assert word in result.stdout
    record = json.loads(out.read_text())
    for key in ("E", "A", "B", "alpha", "beta"):
        assert key in record and f"{key}_ci" in record
        low, high = record[f"{key}_ci"]
        assert low <= record[key] <= high
    assert record["n_points"] == 150 and record["n_starts"] == 4500
    assert record["r2"] > 0.99 and record["seconds"] > 0
    assert record["alpha"] == pytest.approx(CHINCHILLA_TRUTH["alpha"], abs=0.03)
    assert record["beta"] == pytest.approx(CHINCHILLA_TRUTH["beta"], abs=0.03)
    assert record["E"] == pytest.approx(CHINCHILLA_TRUTH["E"], rel=0.05)
    assert record["a"] == pytest.approx(CHINCHILLA_TRUTH["beta"] / (CHINCHILLA_TRUTH["alpha"] + CHINCHILLA_TRUTH["beta"]), abs=0.03)


def test_overridden_column_names(tmp_path, capsys):
    runs = chinchilla_runs(60, seed=2)
    x = np.geomspace(1e18, 1e22, 12)
    powerlaw = power_law_runs(x, E=1.5, A=4e6, alpha=0.33, noise=0.003, seed=3)
    table = pd.DataFrame({"N": runs["params"][:12], "D": runs["tokens"][:12], "compute": x, "val loss": powerlaw["loss"], "note": "x"})
    path = tmp_path / "renamed.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "fit.json"
    args = ["fit", "--csv", str(path), "--form", "powerlaw", "--x", "flops", "--bootstrap", "30", "--out", str(out)]
    code = main([*args, "--params-col", "N", "--tokens-col", "D", "--loss-col", "val loss", "--flops-col", "compute"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["form"] == "powerlaw" and record["x"] == "flops"
    assert record["alpha"] == pytest.approx(0.33, abs=0.03)
    assert record["E"] == pytest.approx(1.5, rel=0.03)
    assert record["alpha_ci"][0] <= 0.33 <= record["alpha_ci"][1]


def test_isoflop_with_renamed_columns_and_holdout(tmp_path, capsys):
    runs = isoflop_runs(np.geomspace(1e18, 1e21, 7), seed=4)
    path = tmp_path / "iso.csv"
    pd.DataFrame({"n_params": runs["params"], "loss": runs["loss"], "C": runs["flops"]}).to_csv(path, index=False)
    out = tmp_path / "iso.json"
    code = main(["fit", "--csv", str(path), "--form", "isoflop", "--params-col", "n_params", "--flops-col", "C", "--holdout", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["a"] == pytest.approx(0.4516, abs=0.02)
    assert record["a_ci"][0] < record["a"] < record["a_ci"][1]
    assert len(record["budgets"]) == 7 and record["holdout"]["k"] == 2
    assert "N_opt" in capsys.readouterr().out


def test_bits_column_gives_per_d_fits_and_the_best_d(tmp_path, capsys):
    x = np.geomspace(1e8, 1e10, 8)
    small = power_law_runs(x, E=1.0, A=30.0, alpha=0.3, noise=0.002, seed=1)
    large = power_law_runs(x, E=0.9, A=100.0, alpha=0.3, noise=0.002, seed=2)
    path = tmp_path / "bits.csv"
    pd.DataFrame({"params": np.concatenate([x, x]), "loss": np.concatenate([small["loss"], large["loss"]]), "bits": [16] * 8 + [32] * 8}).to_csv(path, index=False)
    out = tmp_path / "bits.json"
    assert main(["fit", "--csv", str(path), "--form", "powerlaw", "--bootstrap", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["by_bits"]) == {"16", "32"}
    best = [point["best_bits"] for point in record["best_bits"]["points"]]
    assert best[0] == 16 and best[-1] == 32
    assert "Best d" in capsys.readouterr().out


def test_vocab_form_reports_optimal_bits(tmp_path, capsys):
    runs = vocab_runs(np.geomspace(1e8, 5e9, 5), [8, 16, 32, 64], seed=5)
    path = tmp_path / "vocab.csv"
    pd.DataFrame(runs).to_csv(path, index=False)
    out = tmp_path / "vocab.json"
    assert main(["fit", "--csv", str(path), "--form", "vocab", "--bootstrap", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    for key in ("E", "A", "alpha", "gamma", "B", "beta", "optimal_bits", "r2", "seconds"):
        assert key in record
    chosen = [row["best_observed_bits"] for row in record["optimal_bits"]]
    assert chosen == sorted(chosen) and chosen[0] < chosen[-1]


def _write(path, text):
    path.write_text(text)
    return str(path)


def _bad_values_csv(tmp_path):
    table = pd.DataFrame(chinchilla_runs(12, seed=0))
    table.loc[2, "loss"] = np.nan
    table.loc[5, "loss"] = -1.0
    table.loc[7, "loss"] = 0.0
    table.to_csv(tmp_path / "bad.csv", index=False)
    return str(tmp_path / "bad.csv")


def _good_csv(tmp_path, n=12):
    pd.DataFrame(chinchilla_runs(n, seed=0)).to_csv(tmp_path / "good.csv", index=False)
    return str(tmp_path / "good.csv")


BAD_INPUTS = {
    "missing file": (lambda p: ["--csv", str(p / "absent.csv"), "--form", "chinchilla"], ["no such file", "absent.csv"]),
    "missing column": (
        lambda p: ["--csv", _good_csv(p), "--form", "chinchilla", "--loss-col", "val_loss"],
        ["column 'val_loss' not found", "available: 'params', 'tokens', 'flops', 'loss'", "--loss-col"],
    ),
    "bad values": (
        lambda p: ["--csv", _bad_values_csv(p), "--form", "chinchilla"],
        ["column 'loss'", "1 missing, non-numeric or infinite value (data row 3)", "2 non-positive values (data rows 6, 8)"],
    ),
    "too few points": (lambda p: ["--csv", _good_csv(p, 4), "--form", "chinchilla"], ["needs at least 6 points, got 4"]),
    "too few for powerlaw": (lambda p: ["--csv", _good_csv(p, 3), "--form", "powerlaw"], ["needs at least 4 points, got 3"]),
    "one isoflop budget": (lambda p: ["--csv", _good_csv(p), "--form", "isoflop"], ["at least 2 compute budgets"]),
    "holdout too large": (lambda p: ["--csv", _good_csv(p), "--form", "powerlaw", "--holdout", "10"], ["leaves 2 points"]),
    "empty file": (lambda p: ["--csv", _write(p / "empty.csv", ""), "--form", "chinchilla"], ["is empty"]),
    "header only": (lambda p: ["--csv", _write(p / "h.csv", "params,tokens,loss\n"), "--form", "chinchilla"], ["no data rows"]),
    "vocab without bits": (lambda p: ["--csv", _good_csv(p), "--form", "vocab"], ["column 'bits' not found"]),
    "unknown form": (lambda p: ["--csv", _good_csv(p), "--form", "quadratic"], ["invalid choice: 'quadratic'"]),
    "negative bootstrap": (lambda p: ["--csv", _good_csv(p), "--form", "powerlaw", "--bootstrap", "-3"], ["--bootstrap must be >= 0"]),
    "output folder missing": (
        lambda p: ["--csv", _good_csv(p), "--form", "powerlaw", "--out", str(p / "no" / "such" / "dir.json")],
        ["folder does not exist"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys):
    make_args, fragments = BAD_INPUTS[case]
    code = main(["fit", *make_args(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    message = captured.err
    assert message.count("\n") == 1 and message.startswith("infinity-analyze: error: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--csv", "absent.csv", "--form", "chinchilla"],
        ["fit", "--form", "chinchilla"],
        [],
    ],
)
def test_console_bad_input_has_no_traceback(cli, tmp_path, args):
    result = cli("analysis.cli", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_help_exits_0(capsys):
    assert main(["fit", "--help"]) == 0
    assert "bits" in capsys.readouterr().out
