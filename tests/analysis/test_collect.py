"""collect: the results index from run directories, its CSV round trip through `fit`, and one-line errors."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.results import COLUMNS, FIT_COLUMNS, collect_results
from analysis.run_dirs import load_runs
from analysis.run_errors import RunDataError
from run_factory import BATCH, Law, size, write_run, write_sweep

DEPTHS, BITS = [1, 2, 3, 4, 6], [8, 16]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    losses = write_sweep(root, DEPTHS, BITS, Law(), budgets=[2048, 4096, 8192], seed=3)
    return root, losses


def test_one_row_per_run_and_branch_with_the_run_values(sweep):
    root, losses = sweep
    table = collect_results(root)
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(table["run"]) == set(losses) and len(table) == len(DEPTHS) * len(BITS) * 3
    row = table.set_index("run").loc["depth3_d16"]
    sizes = size(3, 16)
    assert row["status"] == "complete" and row["task"] == "transformer" and row["parent"] == ""
    assert (row["depth"], row["width"], row["d"]) == (3, 192, 16)
    assert row["params_total"] == sizes["parameters"]["total"]
    assert row["params_non_embedding"] == sizes["parameters"]["non_embedding"]
    assert row["train_flops"] == 8192 * sizes["flops_per_image"]["train"]
    assert row["tokens_seen"] == 8192 * sizes["schedule"]["tokens_per_image"]
    assert row["images_seen"] == 8192 and row["budget_images"] == 8192
    assert row["val_loss"] == pytest.approx(losses["depth3_d16"], rel=1e-12)
    assert row["bits_per_image"] == pytest.approx(1.02 * losses["depth3_d16"] / math.log(2) * 16 * 21)
    assert row["metrics_source"] == "metrics.jsonl"
    assert math.isnan(row["psnr"])  # not a tokenizer run


def test_budget_branches_are_rows_of_their_own(sweep):
    root, losses = sweep
    table = collect_results(root).set_index("run")
    branch = table.loc["depth2_d8/branches/4096"]
    assert branch["parent"] == "depth2_d8" and branch["budget_images"] == 4096
    assert branch["images_seen"] == 4096 and branch["val_loss"] == pytest.approx(losses["depth2_d8/branches/4096"])
    assert branch["train_flops"] == pytest.approx(table.loc["depth2_d8", "train_flops"] / 2)


def test_an_empty_branch_folder_is_a_branch_not_started(tmp_path):
    write_run(tmp_path / "depth1_d8", depth=1, bits=8, images=2048, law=Law(), rng=np.random.default_rng(0))
    (tmp_path / "depth1_d8" / "branches" / "1024").mkdir(parents=True)
    assert list(collect_results(tmp_path)["run"]) == ["depth1_d8"]
    (tmp_path / "depth1_d8" / "branches" / "1024" / "notes.txt").write_text("not a run")
    with pytest.raises(RunDataError, match="1024: not a budget branch"):
        collect_results(tmp_path)


def test_fit_aliases_copy_the_index_columns(sweep):
    table = collect_results(sweep[0])
    for role, column in FIT_COLUMNS.items():
        assert table[role].equals(table[column]), role


def test_csv_round_trip_through_the_fit_command(sweep, tmp_path, capsys):
    root, _ = sweep
    csv = tmp_path / "results.csv"
    assert main(["collect", str(root), "--out", str(csv)]) == 0
    printed = capsys.readouterr().out
    assert "depth6_d16/branches/4096" in printed and f"wrote {csv} (30 rows)" in printed
    back = pd.read_csv(csv)
    original = collect_results(root)
    assert list(back.columns) == list(original.columns)
    assert np.allclose(back["val_loss"], original["val_loss"], rtol=1e-9)
    # The largest budget of every size: fit L = E + A N^-alpha per d straight from the CSV.
    largest = back[back["parent"].isna()]
    largest.to_csv(tmp_path / "largest.csv", index=False)
    out = tmp_path / "fit.json"
    assert main(["fit", "--csv", str(tmp_path / "largest.csv"), "--form", "powerlaw", "--bootstrap", "50", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["by_bits"]) == {"8", "16"}
    assert record["by_bits"]["16"]["alpha"] == pytest.approx(Law().alpha, abs=0.03)
    # Every run and branch: approach 3 reads params, tokens and flops from the same columns.
    assert main(["fit", "--csv", str(csv), "--form", "chinchilla", "--bootstrap", "0"]) == 0
    assert "=== bits = 16 (15 runs) ===" in capsys.readouterr().out


def test_partial_runs_are_reported_and_left_out_of_fits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for depth in (1, 2, 3, 4):
        write_run(tmp_path / f"depth{depth}_d16", depth=depth, bits=16, images=4096, law=Law(), rng=rng)
    write_run(tmp_path / "depth6_d16", depth=6, bits=16, images=4096, law=Law(), rng=rng, complete=False)
    table = collect_results(tmp_path).set_index("run")
    partial = table.loc["depth6_d16"]
    assert partial["status"] == "partial"
    assert partial["images_seen"] == BATCH * (4096 // BATCH // 2)  # from the last training record
    assert np.isfinite(partial["val_loss"]) and math.isnan(partial["params_total"])  # no summary.json yet
    csv = tmp_path / "results.csv"
    table.reset_index().to_csv(csv, index=False)
    assert main(["fit", "--csv", str(csv), "--form", "powerlaw", "--x", "flops", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "left out 1 row: depth6_d16: partial (use --include-partial" in out
    # With the partial row kept, its missing parameter count is named by data row.
    assert main(["fit", "--csv", str(csv), "--form", "powerlaw", "--include-partial"]) == 2
    row = list(table.index).index("depth6_d16") + 1
    assert f"column 'params' has 1 missing, non-numeric or infinite value (data row {row})" in capsys.readouterr().err


def test_non_finite_metrics_and_a_line_cut_by_a_kill(tmp_path):
    rng = np.random.default_rng(1)
    write_run(tmp_path / "diverged", depth=2, bits=16, images=2048, law=Law(), rng=rng, nan_final=True)
    metrics = tmp_path / "diverged" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"step": 999, "time": 1.7e9, "val/loss": 0.1')  # killed mid-write
    (run,) = load_runs(tmp_path)
    assert run.records[-1]["step"] == 2048 // BATCH
    assert isinstance(run.records[0]["throughput/mfu"], float) and math.isnan(run.records[0]["throughput/mfu"])
    row = collect_results(tmp_path).iloc[0]
    assert math.isnan(row["val_loss"]) and math.isnan(row["bits_per_image"])
    assert row["bit_accuracy"] > 0  # the finite metrics of the same record are kept


def test_bits_per_image_falls_back_to_the_per_bit_loss(tmp_path):
    write_run(tmp_path / "run", depth=1, bits=8, images=1024, law=Law(), rng=np.random.default_rng(2))
    summary_path = tmp_path / "run" / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["final"]["val/bits_per_image"]
    summary_path.write_text(json.dumps(summary))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        record.pop("val/bits_per_image", None)
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    row = collect_results(tmp_path).iloc[0]
    assert row["bits_per_image"] == pytest.approx(row["ce_per_bit"] / math.log(2) * 8 * 21)


def test_a_tokenizer_run_is_a_row_without_model_size(tmp_path):
    run = tmp_path / "tok_d16"
    run.mkdir()
    (run / "config.yaml").write_text("task: tokenizer\nname: tok_d16\nmodel:\n  depth: 2\ntokenizer:\n  d: 16\n")
    (run / "metrics.jsonl").write_text('{"step": 10, "time": 1.0, "val/loss": 0.2, "val/psnr": 24.5, "val/ssim": 0.81}\n')
    row = collect_results(tmp_path).iloc[0]
    assert row["task"] == "tokenizer" and row["d"] == 16 and row["psnr"] == 24.5 and row["ssim"] == 0.81
    assert math.isnan(row["depth"]) and row["status"] == "partial"


def test_a_corrupt_line_in_the_middle_names_file_and_line(tmp_path, capsys):
    write_run(tmp_path / "depth1_d8", depth=1, bits=8, images=1024, law=Law(), rng=np.random.default_rng(0))
    metrics = tmp_path / "depth1_d8" / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    lines[3] = '{"step": 40, "train/loss": 1.2,,}\n'
    metrics.write_text("".join(lines))
    with pytest.raises(RunDataError, match=rf"{metrics}:4: corrupt metrics line: not JSON"):
        collect_results(tmp_path)
    assert main(["collect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{metrics}:4:" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent", "no such runs folder"),
        (lambda p: _touch(p / "file.txt"), "not a folder"),
        (lambda p: _mkdir(p / "empty" / "nested"), "no runs found under"),
        (lambda p: _run_with(p, "metrics.jsonl", '{"step": "ten", "time": 1}\n{"step": 20}\n'), "metrics.jsonl:1: corrupt metrics line: 'step' must be an integer"),
        (lambda p: _run_with(p, "metrics.jsonl", '[1, 2]\n{"step": 20}\n'), "expected a JSON object, got list"),
        (lambda p: _run_with(p, "summary.json", '{"status": "complete",'), "summary.json"),
        (lambda p: _run_with(p, "config.yaml", "model: [unclosed\n"), "config.yaml"),
        (lambda p: _run_with(p, "branches/big/config.yaml", "task: transformer\n"), "must be named by its number of training images"),
    ],
    ids=["missing", "file", "no runs", "bad step", "not an object", "bad summary", "bad config", "bad branch"],
)
def test_bad_runs_folders_give_one_line(tmp_path, capsys, make, message):
    target = make(tmp_path)
    assert main(["collect", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infinity-analyze: error: ") and err.count("\n") == 1
    assert message in err


def _touch(path):
    path.write_text("x")
    return path


def _mkdir(path):
    path.mkdir(parents=True)
    return path.parent


def _run_with(root, relative, text):
    run = root / "run"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text('{"name": "run"}')
    target = run / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return root


def test_patchified_runs_keep_d_and_the_token_width_apart(tmp_path):
    """Under patchify a token carries 4d bits: the index files d and token_bits separately, also for a run
    whose summary predates token_bits (read from its config), and bits per image use the token width."""
    run = tmp_path / "run"
    write_run(run, depth=1, bits=8, images=1024, law=Law(), rng=np.random.default_rng(2))
    summary = json.loads((run / "summary.json").read_text())
    summary.update(d=8, token_bits=32)
    (run / "summary.json").write_text(json.dumps(summary))
    row = collect_results(tmp_path).iloc[0]
    assert (row["d"], row["token_bits"]) == (8, 32)

    old = {k: v for k, v in summary.items() if k not in ("d", "token_bits")}
    del old["final"]["val/bits_per_image"]
    (run / "summary.json").write_text(json.dumps({**old, "bits": 32}))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "val/bits_per_image"}) + "\n" for r in records))
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("tokenizer:\n", "tokenizer:\n  patchify: true\n", 1))
    row = collect_results(tmp_path).iloc[0]
    assert (row["d"], row["token_bits"]) == (8, 32)
    assert row["bits_per_image"] == pytest.approx(row["ce_per_bit"] / math.log(2) * 32 * 21)


def test_records_a_restarted_run_logged_twice_keep_the_last_of_each_step():
    from analysis.metrics_jsonl import latest_records

    def rec(step, kind, value):
        return {"step": step, "time": 0.0, f"{kind}/loss": value}

    # steps 1-4 logged, killed, restarted from the step-2 checkpoint: 3 and 4 logged again; step 4 also validates
    records = [rec(1, "train", 1.0), rec(2, "train", 2.0), rec(2, "val", 2.5), rec(3, "train", 3.0), rec(4, "train", 4.0),
               rec(3, "train", 3.1), rec(4, "train", 4.1), rec(4, "val", 4.5)]
    kept = latest_records(records)
    assert [(r["step"], next(k for k in r if k.endswith("loss")), r.get("train/loss", r.get("val/loss"))) for r in kept] == [
        (1, "train/loss", 1.0), (2, "train/loss", 2.0), (2, "val/loss", 2.5), (3, "train/loss", 3.1), (4, "train/loss", 4.1), (4, "val/loss", 4.5)]
    # killed after logging step 4 with the checkpoint at 3: step 4 logged again, no step goes back
    assert [r["train/loss"] for r in latest_records([rec(3, "train", 3.0), rec(4, "train", 4.0), rec(4, "train", 4.1)])] == [3.0, 4.1]
    assert latest_records(records[:5]) == records[:5]


def test_a_damaged_or_diverged_run_is_one_line_naming_it_and_the_others_are_still_reported(tmp_path, capsys):
    write_sweep(tmp_path, [1, 2, 3, 4, 6, 8], [8], Law(), budgets=[2048], seed=4)
    summary_path = tmp_path / "depth2_d8" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "images_seen": "lots", "final": [1, 2]}))  # wrong types
    write_run(tmp_path / "depth3_d8", depth=3, bits=8, images=2048, law=Law(), rng=np.random.default_rng(1), nan_final=True)
    assert main(["collect", str(tmp_path), "--out", str(tmp_path / "runs.csv")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 2
    assert "run depth2_d8: summary.json is damaged ('images_seen' is str 'lots', not a number; 'final' is list" in warnings[0]
    assert "run depth3_d8: diverged (final val_loss is nan)" in warnings[1]
    table = pd.read_csv(tmp_path / "runs.csv").set_index("run")
    assert table.loc["depth2_d8", "status"] == "damaged" and table.loc["depth3_d8", "status"] == "diverged"
    assert (table.drop(["depth2_d8", "depth3_d8"])["status"] == "complete").all() and len(table) == 6
    # fit takes collect's own CSV: the two runs are left out by name, the others fitted
    assert main(["fit", "--csv", str(tmp_path / "runs.csv"), "--form", "powerlaw", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "depth2_d8: damaged" in out and "depth3_d8: diverged" in out
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--bootstrap", "0"]) == 0
    assert (tmp_path / "report" / "report.html").is_file() and "run depth3_d8: diverged" in capsys.readouterr().err
