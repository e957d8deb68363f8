"""Two gloo processes: sharded/replicated parity with one process, FSDP2 kill-and-resume through the
training command, DeepSpeed ZeRO save and resume, and a checkpoint written by 2 ranks loaded by 1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infinity_train.config import load_config, to_typed, validate
from infinity_train.distributed import detect_world

from .conftest import ROOT, command_env, kill_runs_of, run_train, tiny_overrides, train_command, train_losses

FSDP_STEPS = 24


@pytest.mark.parametrize("strategy", ["fsdp", "ddp", "hsdp"])
def test_two_ranks_match_one_process_on_the_same_global_batches(strategy):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(ROOT / "tests/train/parity_script.py"), strategy]
    result = subprocess.run(command, cwd=ROOT, env=command_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    gaps = json.loads(result.stdout.strip().splitlines()[-1])
    assert gaps["loss_gap"] < 1e-5, gaps
    assert gaps["param_gap"] < 1e-4, gaps  # AdamW after 3 steps at lr 3e-3: a few % of one update


@pytest.fixture(scope="module")
def fsdp_reference(tmp_path_factory, data_root, trained_tokenizer) -> Path:
    run_dir = tmp_path_factory.mktemp("fsdp") / "run"
    result = run_train([*fsdp_overrides(data_root, run_dir), f"tokenizer.checkpoint={trained_tokenizer}"], nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def fsdp_overrides(data_root: Path, run_dir: Path) -> list[str]:
    return [*tiny_overrides(data_root, run_dir, steps=FSDP_STEPS, logging__checkpoint_every=6), "parallel=fsdp", "data.num_workers=1"]


def test_fsdp_run_killed_and_resumed_finishes_with_the_same_losses(tmp_path, data_root, trained_tokenizer, fsdp_reference):
    run_dir = tmp_path / "run"
    overrides = [*fsdp_overrides(data_root, run_dir), f"tokenizer.checkpoint={trained_tokenizer}"]
    # niced, so that this process watching for the checkpoint is not starved by the two ranks
    process = subprocess.Popen(
        train_command(overrides, nproc=2), cwd=ROOT, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.nice(15),
    )
    target = run_dir / "checkpoints" / "step_00000006"
    deadline = time.monotonic() + 180
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert kill_runs_of(run_dir) >= 3, "the launcher and both ranks (and their data workers) should have been running"
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "summary.json").exists()

    result = run_train(overrides, nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_at = int(re.search(r"resumed from \S+ at step (\d+)", result.stderr).group(1))
    assert 6 <= resumed_at < FSDP_STEPS, f"killed too late to test a mid-run resume (resumed at step {resumed_at})"
    resumed, reference = train_losses(run_dir), train_losses(fsdp_reference)
    assert sorted(resumed) == list(range(1, FSDP_STEPS + 1))
    assert max(abs(resumed[s] - reference[s]) for s in reference) <= 1e-5


def test_checkpoint_of_two_ranks_loads_in_one_process(tmp_path, data_root, trained_tokenizer, fsdp_reference):
    """Model and optimizer state saved sharded by 2 FSDP ranks are restored whole by 1 process."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from infinity_train.train import Trainer

    checkpoint = fsdp_reference / "checkpoints" / f"step_{FSDP_STEPS:08d}"
    overrides = [*tiny_overrides(data_root, tmp_path / "run", steps=FSDP_STEPS), f"tokenizer.checkpoint={trained_tokenizer}", f"resume={checkpoint}", "world_size=1"]
    resolved = load_config(overrides)
    trainer = Trainer(validate(to_typed(resolved)), resolved, detect_world({}))
    assert trainer.state.step == FSDP_STEPS

    exported = load_file(str(fsdp_reference / "export" / "model.safetensors"))
    loaded = trainer.task.model.state_dict()
    assert exported.keys() == loaded.keys()
    assert all(torch.equal(exported[k], loaded[k]) for k in exported)

    dcp_to_torch_save(checkpoint / "dcp", tmp_path / "whole.pt")
    saved = torch.load(tmp_path / "whole.pt", weights_only=False)["model"]["optim"]["state"]
    optimizer = trainer.units["model"].optimizer
    names = {id(p): n for n, p in trainer.task.model.named_parameters()}
    for param, state in optimizer.state.items():
        assert torch.equal(state["exp_avg"], saved[names[id(param)]]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], saved[names[id(param)]]["exp_avg_sq"])
    assert trainer.fit() == 0  # already at the last step: exports and finishes


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
def test_deepspeed_save_and_resume(tmp_path, data_root, trained_tokenizer, fsdp_reference, strategy):
    """ZeRO runs train like the torch strategies and resume from DeepSpeed's own checkpoints."""
    first, second = tmp_path / "first", tmp_path / "second"
    common = [f"tokenizer.checkpoint={trained_tokenizer}", f"parallel={strategy}", "data.num_workers=1"]
    result = run_train([*tiny_overrides(data_root, first, steps=FSDP_STEPS, logging__checkpoint_every=6), *common], nproc=2, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (first / "checkpoints" / "step_00000012" / "deepspeed").is_dir()
    losses = train_losses(first)
    reference = train_losses(fsdp_reference)
    # The first step runs the same weights on the same batch: only summation order differs.
    # After it, DeepSpeed reduces gradients in another order than FSDP and AdamW divides by
    # sqrt(v), which turns last-bit differences in near-zero gradients into lr-sized ones;
    # a wrong reduction (a missing average, a dropped shard) moves the loss by >1e-2.
    assert abs(losses[1] - reference[1]) <= 1e-6
    assert max(abs(losses[s] - reference[s]) for s in range(1, 7)) <= 1e-4

    resume = f"resume={first / 'checkpoints' / 'step_00000012'}"
    result = run_train([*tiny_overrides(data_root, second, steps=FSDP_STEPS, logging__checkpoint_every=6), *common, resume], nproc=2, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = train_losses(second)
    assert sorted(resumed) == list(range(13, FSDP_STEPS + 1))
    assert max(abs(resumed[s] - losses[s]) for s in resumed) <= 1e-5
    assert load_file(str(second / "export" / "model.safetensors")).keys() == load_file(str(first / "export" / "model.safetensors")).keys()
