import json
import logging

import pytest

from infinity_train.config import load_config
from infinity_train.console import progress, setup_logging
from infinity_train.run_dir import MetricsFile, RunDirectory
from infinity_train.tracking import Tracker


def make_run(tmp_path, *overrides):
    cfg = load_config([f"run_dir={tmp_path / 'run'}", "name=unit", *overrides])
    return cfg, RunDirectory.for_config(cfg).create(cfg)


def test_run_directory_layout_and_resolved_config(tmp_path):
    cfg, run = make_run(tmp_path, "model=debug3")
    assert run.config_path.exists() and run.logs_dir.is_dir() and run.checkpoints_dir.is_dir()
    assert run.load_config().model.depth == 3
    assert "${" not in run.config_path.read_text()


def test_wandb_id_is_stable_across_restarts_and_config_history_kept(tmp_path):
    cfg, run = make_run(tmp_path)
    first = run.identity("unit")["wandb_id"]
    cfg2, run2 = make_run(tmp_path, "schedule.total_steps=999")
    assert run2.identity("unit")["wandb_id"] == first
    assert (run2.path / "config.prev-1.yaml").exists()
    assert run2.load_config().schedule.total_steps == 999
    other = RunDirectory(tmp_path / "other").create(cfg)
    assert other.identity("unit")["wandb_id"] != first


def test_metrics_file_nan_truncate_and_cut_line(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        metrics.write(step, {"loss": 1.0 / step, "grad_norm": float("nan") if step == 3 else 0.5})
    records = list(metrics.read())
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[2]["grad_norm"] == "nan"
    assert metrics.truncate_after(3) == 2
    assert [r["step"] for r in metrics.read()] == [1, 2, 3]
    with metrics.path.open("a") as f:
        f.write('{"step": 4, "lo')  # a kill in the middle of a write
    assert [r["step"] for r in metrics.read()] == [1, 2, 3]
    metrics.path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        list(metrics.read())


def test_tracker_offline_writes_metrics_and_wandb_run(tmp_path):
    cfg, run = make_run(tmp_path, "logging=offline")
    tracker = Tracker(run, cfg, rank=0)
    tracker.log(1, {"loss": 0.7, "lr": 1e-3})
    tracker.finish()
    assert json.loads(run.metrics_path.read_text().splitlines()[0])["loss"] == 0.7
    offline_runs = list((run.path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and run.identity("unit")["wandb_id"] in offline_runs[0].name


def test_tracker_disabled_and_non_zero_rank(tmp_path):
    cfg, run = make_run(tmp_path, "logging=disabled")
    Tracker(run, cfg, rank=0).log(1, {"loss": 1.0})
    assert not (run.path / "wandb").exists() and run.metrics_path.exists()
    cfg, run = make_run(tmp_path / "r1", "logging=offline")
    tracker = Tracker(run, cfg, rank=1)
    tracker.log(1, {"loss": 1.0})
    assert not run.metrics_path.exists() and not (run.path / "wandb").exists()


def test_progress_lines_when_not_a_tty(tmp_path, caplog):
    setup_logging(tmp_path / "logs", rank=0)
    with caplog.at_level(logging.INFO, logger="progress"):
        assert list(progress(range(5), desc="work", mode="lines", every_s=0.0)) == list(range(5))
    assert any("work 5/5" in message for message in caplog.messages)
    assert (tmp_path / "logs" / "rank0.log").exists()
