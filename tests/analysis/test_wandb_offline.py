"""Collecting a run from its wandb offline folder (the .wandb transaction log) when metrics.jsonl is missing.

The logs are written by the installed wandb itself, offline, in a subprocess: a run that logs
enough to span several 32 KiB blocks, then a resumed segment that repeats steps from its checkpoint.
"""
import math
import os
import subprocess
import sys

import pytest

from analysis.results import collect_results
from analysis.run_dirs import load_runs
from analysis.run_errors import RunDataError
from analysis.wandb_offline import offline_folders, read_log_payloads

WRITER = """
import math, sys, wandb
run_dir = sys.argv[1]
config = {"task": "transformer", "name": "depth2_d16", "model": {"depth": 2, "width": None},
          "tokenizer": {"d": 16}, "data": {"resolution": 64, "global_batch_size": 16}, "schedule": {"total_steps": 300}}
def segment(first, last):
    run = wandb.init(project="t", name="depth2_d16", id="depth2_d16-0123abcd", resume="allow", dir=run_dir,
                     mode="offline", config=config, settings=wandb.Settings(console="off", x_disable_stats=True))
    for step in range(first, last + 1):
        metrics = {f"train/metric_{i}": step + i / 100 for i in range(20)}
        metrics |= {"train/loss": 2.0 / (1 + step), "progress/images_seen": 16 * step,
                    "progress/train_flops": 1e9 * step, "throughput/mfu": math.nan}
        if step % 50 == 0:
            metrics |= {"val/loss": 1.0 + 1.0 / (1 + step), "val/bits_per_image": 300.0 + first,
                        "val/bit_accuracy": 0.7, "val/ce_per_bit": math.inf if step == 100 else 1.1}
        run.log(metrics, step=step)
    run.finish()
segment(0, 200)
segment(150, 300)  # resumed from a step-150 checkpoint: steps 150..200 are logged again
"""


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wandb_runs")
    run_dir = root / "depth2_d16"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"name": "depth2_d16", "wandb_id": "depth2_d16-0123abcd", "created": 1.7e9}')
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    done = subprocess.run([sys.executable, "-c", WRITER, str(run_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, run_dir


def test_the_offline_log_spans_several_blocks_and_resumes_are_merged(wandb_run):
    _, run_dir = wandb_run
    folders = offline_folders(run_dir)
    assert len(folders) == 2
    assert max((f / next(f.glob("*.wandb")).name).stat().st_size for f in folders) > 3 * 32 * 1024
    (run,) = load_runs(run_dir.parent)
    assert run.metrics_source == "wandb offline"
    steps = [r["step"] for r in run.records]
    assert steps == list(range(301))  # 0..149 from the first segment, 150..300 from the resumed one
    by_step = {r["step"]: r for r in run.records}
    assert by_step[200]["val/bits_per_image"] == 450.0  # the resumed segment's value replaces the first
    assert by_step[100]["val/bits_per_image"] == 300.0
    assert by_step[120]["train/metric_7"] == pytest.approx(120.07)
    assert math.isnan(by_step[3]["throughput/mfu"]) and math.isinf(by_step[100]["val/ce_per_bit"])
    assert run.config["tokenizer"]["d"] == 16 and run.config["model"]["depth"] == 2


def test_a_row_from_the_offline_log(wandb_run):
    root, _ = wandb_run
    row = collect_results(root).iloc[0]
    assert row["run"] == "depth2_d16" and row["status"] == "partial"  # no summary.json
    assert (row["depth"], row["width"], row["d"]) == (2, 128, 16)
    assert row["val_loss"] == pytest.approx(1.0 + 1.0 / 301)
    assert row["images_seen"] == 16 * 300 and row["train_flops"] == 3e11 and row["step"] == 300
    assert row["bit_accuracy"] == 0.7 and row["budget_images"] == 300 * 16


def test_a_log_cut_by_a_kill_keeps_its_complete_records(wandb_run, tmp_path):
    _, run_dir = wandb_run
    log = next(offline_folders(run_dir)[0].glob("*.wandb"))
    data = log.read_bytes()
    cut = tmp_path / "cut.wandb"
    cut.write_bytes(data[: len(data) // 2 + 3])
    whole, partial = list(read_log_payloads(log)), list(read_log_payloads(cut))
    assert 0 < len(partial) < len(whole) and partial == whole[: len(partial)]


def test_a_corrupt_log_names_the_file(wandb_run, tmp_path):
    _, run_dir = wandb_run
    log = next(offline_folders(run_dir)[0].glob("*.wandb"))
    data = bytearray(log.read_bytes())
    data[40_000] ^= 0xFF
    bad = tmp_path / "bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(RunDataError, match=r"bad\.wandb: corrupt chunk at byte \d+"):
        list(read_log_payloads(bad))
    bad.write_bytes(b"not a wandb log")
    with pytest.raises(RunDataError, match="not a wandb transaction log"):
        list(read_log_payloads(bad))
