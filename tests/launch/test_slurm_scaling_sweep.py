"""``infinity-train sweep cluster=slurm_test``: every run of a scaling sweep is a Slurm job on the
emulated cluster (tokenizer, then the transformer run, then its cooldown branch), then the report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.slurm_test_cluster.cluster import TestCluster
from slurm_helpers import ROOT, TIMINGS, launcher_env, tiny_overrides


@pytest.mark.slow
def test_scaling_sweep_runs_every_run_as_a_slurm_job(slurm_cluster: TestCluster, synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    common = [o for o in tiny_overrides(synthetic_root, root, steps=8, batch=4) if not o.startswith(("schedule.total_steps", "parallel="))]
    overrides = [
        *common,
        "sweep=cpu_small", "sweep.depths=[1]", "sweep.bits=[8]", "sweep.image_budgets=[16,32]", "sweep.seeds=1",
        "sweep.tokenizer=cpu_d16",  # the learned tokenizer: a training job with steps (the PCA fit has none)
        "sweep.tokenizer_overrides=['experiment=tokenizer_cpu','schedule.total_steps=2','schedule.warmup_steps=1','parallel=ddp']",
        "sweep.overrides=['parallel=ddp','schedule.warmup_steps=1','logging.val_every=0','logging.sample_prompts=0']",
        "model.text_encoder.name=tiny-t5", "data.synthetic_val_samples=0",
    ]
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "infinity_train.cli", "sweep", *overrides], cwd=ROOT, env=launcher_env(slurm_cluster), capture_output=True, text=True, timeout=600)
    TIMINGS.append(f"scaling sweep as Slurm jobs (tokenizer, run, branch): {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr[-4000:]
    for name, step in (("tokenizers/d8", 2), ("depth1_d8", 8), ("depth1_d8/branches/16", 4)):
        assert json.loads((root / name / "summary.json").read_text())["step"] == step, name
        assert list((root / name / "logs").glob("slurm-*.out")), f"{name} did not run as a Slurm job"
    assert "report:" in result.stdout
