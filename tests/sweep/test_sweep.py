"""The sweep command end to end on a tiny grid: tokenizer first, main runs, cooldown branches,
report; then restarted: finished runs are skipped and a killed run resumes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infinity_train.config import ConfigError
from infinity_train.sweep.plan import plan_sweep

ROOT = Path(__file__).resolve().parents[2]


def tiny_sweep(root: Path, data: Path) -> list[str]:
    return [
        "sweep=cpu_small",
        "sweep.depths=[1,2]",
        "sweep.bits=[8]",
        "sweep.image_budgets=[64,128]",
        "sweep.seeds=1",
        "sweep.tokenizer=cpu_d16",  # the learned tokenizer's path (the main job's default, pca, is planned below)
        "sweep.tokenizer_overrides=['experiment=tokenizer_cpu','schedule.total_steps=2','schedule.warmup_steps=1']",
        "sweep.overrides=['schedule.warmup_steps=1','logging.log_every=2','logging.val_every=0','logging.checkpoint_every=4','logging.sample_prompts=2']",
        "tokenizer.base_channels=16",
        "tokenizer.channel_multipliers=[1,1,1,1,1]",
        "model.text_encoder.name=tiny-t5",
        f"data.root={data}",
        "data.synthetic_train_samples=128",
        "data.synthetic_val_samples=16",
        "data.global_batch_size=8",
        "data.num_workers=0",
        "logging.wandb=disabled",
        "device=cpu",
        f"run_dir={root}",
    ]


def sweep_command(args: list[str]) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "infinity_train.cli", "sweep", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_plan_branches_smaller_budgets_off_the_largest_run(tmp_path):
    plan = plan_sweep(tiny_sweep(tmp_path / "sweep", tmp_path / "data"))
    assert [r.name for r in plan.runs] == ["tokenizers/d8", "depth1_d8", "depth1_d8/branches/64", "depth2_d8", "depth2_d8/branches/64"]
    main, branch = plan.runs[1], plan.runs[2]
    assert "schedule.total_steps=16" in main.overrides and "logging.checkpoint_steps=[6]" in main.overrides  # 8 - 20% of 8 (2) = 6
    assert "schedule.total_steps=8" in branch.overrides and branch.after == ["depth1_d8"]
    assert any(o.endswith("depth1_d8/checkpoints/step_00000006") for o in branch.overrides)
    assert main.description["parameters"]["total"] < plan.runs[3].description["parameters"]["total"]


def test_the_main_job_plans_pca_tokenizers_and_seed_replicates(tmp_path):
    plan = plan_sweep(["sweep=cpu_small", "sweep.bits=[8]", "sweep.depths=[1]", f"run_dir={tmp_path}"])
    assert [r.name for r in plan.runs] == ["tokenizers/d8", "tokenizers/d8_seed1", "depth1_d8", "depth1_d8_seed1"]
    by_name = {r.name: r for r in plan.runs}
    assert all("tokenizer=pca" in r.overrides for r in plan.runs)
    assert "seed=1" in by_name["tokenizers/d8_seed1"].overrides and "seed=1" in by_name["depth1_d8_seed1"].overrides
    assert f"tokenizer.checkpoint={tmp_path / 'tokenizers' / 'd8'}" in by_name["depth1_d8_seed1"].overrides  # seed 0's tokenizer
    assert plan.config.sweep.parallel_runs == 2
    with pytest.raises(ConfigError, match="sweep.seeds must be >= 1"):
        plan_sweep(["sweep=cpu_small", "sweep.seeds=0", f"run_dir={tmp_path}"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["sweep.depths=[]"], "has no runs"),
        (["sweep.image_budgets=[0,128]"], "image_budgets must be positive"),
        (["+sweep.run_overrides.depth9_d8=['model.drop_path=0']"], "not in the grid: depth9_d8"),
        (["sweep.bits=[10]"], "unsupported bit widths [10]"),
    ],
)
def test_bad_sweeps_fail_before_training(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_sweep([*tiny_sweep(tmp_path / "sweep", tmp_path / "data"), *extra])


def test_sweep_runs_reports_and_restarts(tmp_path):
    root, data = tmp_path / "sweep", tmp_path / "data"
    args = tiny_sweep(root, data)
    result = sweep_command(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "report" / "report.html").is_file()
    assert "headline:" in result.stdout and f"report: {root / 'report' / 'report.html'}" in result.stdout
    for name in ("tokenizers/d8", "depth1_d8", "depth2_d8", "depth1_d8/branches/64", "depth2_d8/branches/64"):
        assert json.loads((root / name / "summary.json").read_text())["status"] == "complete", name
    branch = json.loads((root / "depth2_d8/branches/64/summary.json").read_text())
    assert branch["step"] == 8 and branch["images_seen"] == 64

    # restart after losing one main run's end: finished runs are skipped, the partial one resumes
    (root / "depth2_d8" / "summary.json").unlink()
    shutil.rmtree(root / "depth2_d8" / "checkpoints" / "step_00000016")
    shutil.rmtree(root / "depth2_d8/branches/64")
    again = sweep_command(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count(" already complete: ") == 3  # tokenizer, depth1 run and its branch
    log = (root / "logs" / "depth2_d8.log").read_text()
    assert "resumed from" in log and "at step 12" in log
    assert json.loads((root / "depth2_d8" / "summary.json").read_text())["step"] == 16
    assert (root / "depth2_d8/branches/64/summary.json").is_file()
