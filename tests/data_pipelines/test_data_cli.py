"""The infinity-data CLI: synthetic and check subcommands, and one-line errors with exit status 2."""

import json

import pytest

from data_pipelines.cli import main
from data_pipelines.shards import read_manifest


def test_synthetic_then_check(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["synthetic", "--out", str(out), "--num-samples", "30", "--resolution", "64", "--aspect-ratios", "1.0,0.5",
            "--val-samples", "6", "--seed", "1", "--samples-per-shard", "16", "--format", "png"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "train: 30 samples in 2 shards (wrote 2)" in captured.out
    assert "val: 6 samples in 1 shards (wrote 1)" in captured.out
    assert "synthetic train: 30/30 (100%" in captured.err  # plain progress lines when stderr is not a terminal
    splits = read_manifest(out)["splits"]
    assert splits["train"]["num_samples"] == 30 and splits["val"]["num_samples"] == 6
    assert splits["train"]["aspect_ratios"] == {"0.5": 15, "1.0": 15}

    assert main(args) == 0
    assert "nothing to do, all shards already complete" in capsys.readouterr().out

    assert main(["check", "--shards", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["criterion", "images", "accuracy"]
    assert any(line.startswith("overall[") for line in lines)
    summary = json.loads(lines[-1])
    assert summary["images"] == 36 and summary["accuracy"]["overall"] == 1.0
    assert set(summary["accuracy"]) == {"object", "color", "count", "position", "overall"}

    assert main(["check", "--shards", str(out / "val-{000000..000000}.tar")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 6
    assert main(["check", "--shards", str(out), "--split", "train", "--limit", "5"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 5


def test_default_val_split_is_written(tmp_path, capsys):
    assert main(["synthetic", "--out", str(tmp_path), "--num-samples", "20", "--resolution", "64"]) == 0
    assert read_manifest(tmp_path)["splits"]["val"]["num_samples"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resolution", "100"], "--resolution 100 is not supported"),
        (["--resolution", "64", "--aspect-ratios", "1.0,0.9"], "'0.9' is not an aspect template"),
        (["--resolution", "64", "--aspect-ratios", "wide"], "'wide' is not an aspect template"),
        (["--resolution", "64", "--num-samples", "0"], "--num-samples must be >= 1"),
        (["--resolution", "64", "--samples-per-shard", "-3"], "--samples-per-shard must be >= 1"),
        (["--resolution", "64", "--val-samples", "-1"], "--val-samples must be >= 0"),
        (["--resolution", "64", "--format", "bmp"], "invalid choice: 'bmp'"),
        (["--resolution", "sixty-four"], "invalid int value"),
    ],
)
def test_bad_synthetic_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    args = ["synthetic", "--out", str(tmp_path / "x"), "--num-samples", "4", *extra]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["synthetic", "--num-samples", "4", "--resolution", "64"], "the following arguments are required: --out"),
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["check", "--shards", "/nonexistent/dir-{000000..000001}.tar"], "not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_check_on_a_directory_without_shards_exits_2(tmp_path, capsys):
    assert main(["check", "--shards", str(tmp_path)]) == 2
    assert "no shards found" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["synthetic", "--help"]) == 0
    assert "--num-samples" in capsys.readouterr().out


def test_runs_as_a_module(tmp_path, cli):
    result = cli("data_pipelines.cli", "synthetic", "--out", str(tmp_path), "--num-samples", "3", "--resolution", "64", "--val-samples", "0")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["train-000000.tar"]
    bad = cli("data_pipelines.cli", "synthetic", "--out", str(tmp_path), "--num-samples", "3", "--resolution", "65")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
