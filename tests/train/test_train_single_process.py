"""The training command end to end in one process: run directory, exports, exact resume after
SIGKILL and after SIGUSR1, non-finite steps, refused checkpoints and missing inputs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from infinity_train import exit_codes
from infinity_train.config import load_config, to_typed, validate
from infinity_train.distributed import detect_world
from infinity_train.tokenizer import load_tokenizer_checkpoint

from .conftest import ROOT, command_env, run_train, tiny_overrides, train_command, train_losses

KILL_RUN_STEPS = 40


pytestmark = pytest.mark.usefixtures("single_thread")


def in_process_trainer(overrides: list[str]):
    from infinity_train.train import Trainer

    resolved = load_config([*overrides, "world_size=1"])
    return Trainer(validate(to_typed(resolved)), resolved, detect_world({}))


def signal_during_step(trainer, step: int):
    """SIGUSR1 to this process while the 0-based ``step`` computes its loss (as a preemption would)."""
    loss = trainer.task.loss

    def loss_then_signal(unit, micro, current):
        if current == step:
            os.kill(os.getpid(), signal.SIGUSR1)
        return loss(unit, micro, current)

    trainer.task.loss = loss_then_signal
    return trainer


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_root, trained_tokenizer) -> Path:
    """An uninterrupted transformer run every resume test compares with."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_train([*tiny_overrides(data_root, run_dir, steps=KILL_RUN_STEPS, logging__checkpoint_every=10), f"tokenizer.checkpoint={trained_tokenizer}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_tokenizer_run_directory(trained_tokenizer):
    summary = json.loads((trained_tokenizer / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["task"] == "tokenizer" and summary["step"] == 2
    assert summary["final"]["val/psnr"] > 0 and 0 < summary["final"]["val/ssim"] <= 1
    assert summary["final"]["val/latent_norm"] == pytest.approx(1.0, abs=0.1)  # the LayerNorm's 1/sqrt(d) weight
    assert 0.0 <= summary["final"]["val/parent_bit_dependence"] <= 1.0
    tokenizer = load_tokenizer_checkpoint(trained_tokenizer / "export" / "tokenizer.safetensors")
    assert tokenizer.d == 8 and tokenizer.architecture["latent_layernorm"] is True
    assert (trained_tokenizer / "checkpoints" / "step_00000002" / "meta.json").is_file()
    assert (trained_tokenizer / "config.yaml").is_file() and (trained_tokenizer / "run.json").is_file()


def test_transformer_run_directory(reference_run):
    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == KILL_RUN_STEPS
    assert summary["images_seen"] == 8 * KILL_RUN_STEPS and summary["tokens_seen"] == 21 * 8 * KILL_RUN_STEPS
    assert summary["train_flops"] > 0 and summary["params_total"] > 0
    described = json.loads(subprocess.run(
        [*train_command([])[:2], "infinity_train.cli", "describe", "model=debug1", "model.text_encoder.name=tiny-t5", "tokenizer.d=8"],
        capture_output=True, text=True, env=command_env(), cwd=ROOT, check=True,
    ).stdout)
    assert summary["params_total"] == described["parameters"]["total"]
    assert summary["final"]["val/bits_per_image"] == pytest.approx(summary["final"]["val/bits_per_token"] * 21)
    final = summary["final"]  # the d-independent quality of the model's own teacher-forced predictions, and its ceiling
    assert 0 < final["val/psnr_predicted"] and 0 < final["val/mse_predicted"] <= 4 and final["val/psnr_tokenizer"] > 0
    assert 0 < final["val/mse_expected"] <= 4 and final["val/psnr_expected"] > 0
    records = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, KILL_RUN_STEPS + 1))
    for key in ("train/bit_accuracy_scale/2", "train/loss_scale/0", "optim/grad_norm", "optim/lr", "throughput/images_per_s",
                "throughput/tokens_per_s", "throughput/tflops_per_s_per_device", "time/data_wait_fraction", "memory/peak_gb",
                "data/skipped_total"):
        assert key in train[-1], key
    assert train[-1]["train/loss"] < train[0]["train/loss"]
    assert any("val/ce_per_bit" in r for r in records)
    kept = sorted(p.name for p in (reference_run / "checkpoints").iterdir())
    assert kept == ["step_00000010", "step_00000020", "step_00000030", "step_00000040"]
    assert (reference_run / "export" / "model.safetensors").is_file()
    assert (reference_run / "samples" / "final.png").is_file()  # 8 held-out prompts sampled at the end
    assert 0.0 <= summary["final"]["val/checker_score"] <= 1.0 and "val/checker_object" in summary["final"]


def test_cached_shards_train_like_the_raw_ones(tmp_path, data_root, trained_tokenizer):
    """The cache job's shards (tokenizer latents and caption embeddings precomputed) give the same
    batches and, up to the fp16 storage of the latents, the same losses as training on the images."""
    cached = tmp_path / "cached"
    for split in ("train", "val"):
        result = subprocess.run(
            [*train_command([])[:2], "infinity_train.data_cli", "cache", "--shards", str(data_root), "--split", split, "--out", str(cached),
             "--tokenizer", str(trained_tokenizer / "export" / "tokenizer.safetensors"), "--resolution", "64", "--aspect-ratios", "1.0",
             "--text-encoder", "tiny-t5", "--batch-size", "1"],
            cwd=ROOT, env=command_env(), capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    common = [f"tokenizer.checkpoint={trained_tokenizer}", "data.short_caption_prob=1.0", "logging.sample_prompts=0"]
    raw = run_train([*tiny_overrides(data_root, tmp_path / "raw", steps=4), *common])
    assert raw.returncode == 0, raw.stderr[-2000:]
    from_cache = run_train([
        *tiny_overrides(data_root, tmp_path / "from_cache", steps=4), *common, "data.source=cached",
        f"data.train_shards='{cached}/train-{{000000..000015}}.tar'", f"data.val_shards='{cached}/val-{{000000..000015}}.tar'",
    ])
    assert from_cache.returncode == 0, from_cache.stderr[-2000:]
    raw_losses, cached_losses = train_losses(tmp_path / "raw"), train_losses(tmp_path / "from_cache")
    assert sorted(raw_losses) == sorted(cached_losses) == [1, 2, 3, 4]
    assert max(abs(raw_losses[s] - cached_losses[s]) for s in raw_losses) < 2e-3
    raw_val = json.loads((tmp_path / "raw" / "summary.json").read_text())["final"]["val/loss"]
    cached_val = json.loads((tmp_path / "from_cache" / "summary.json").read_text())["final"]["val/loss"]
    assert cached_val == pytest.approx(raw_val, abs=2e-3)


def test_sigkill_then_resume_reproduces_every_loss_bitwise(tmp_path, data_root, trained_tokenizer, reference_run):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(data_root, run_dir, steps=KILL_RUN_STEPS, logging__checkpoint_every=10), f"tokenizer.checkpoint={trained_tokenizer}"]
    process = subprocess.Popen(  # niced, so that this process watching for the checkpoint is not starved
        train_command(overrides), cwd=ROOT, env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.nice(15)
    )
    target = run_dir / "checkpoints" / "step_00000010"
    deadline = time.monotonic() + 120
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    result = run_train(overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_at = int(re.search(r"resumed from \S+ at step (\d+)", result.stderr).group(1))
    assert 10 <= resumed_at < KILL_RUN_STEPS, f"killed too late to test a mid-run resume (resumed at step {resumed_at})"
    assert train_losses(run_dir) == train_losses(reference_run)


def test_sigusr1_checkpoints_exits_for_requeue_and_resumes_exactly(tmp_path, data_root, trained_tokenizer, reference_run):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(data_root, run_dir, steps=KILL_RUN_STEPS, logging__checkpoint_every=10), f"tokenizer.checkpoint={trained_tokenizer}"]
    trainer = signal_during_step(in_process_trainer(overrides), 6)
    assert trainer.fit() == exit_codes.REQUEUE
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000007"]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is removed again

    resumed = in_process_trainer(overrides)
    assert resumed.state.step == 7
    assert resumed.fit() == exit_codes.OK
    assert train_losses(run_dir) == train_losses(reference_run)


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, data_root, trained_tokenizer):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(data_root, run_dir, steps=20), f"tokenizer.checkpoint={trained_tokenizer}", "optim.max_nonfinite_steps=3"]
    trainer = in_process_trainer(overrides)
    loss = trainer.task.loss
    poisoned = {2} | set(range(5, 20))

    def loss_with_nan(unit, micro, step):
        value, metrics = loss(unit, micro, step)
        return (value * float("nan"), metrics) if step in poisoned else (value, metrics)

    trainer.task.loss = loss_with_nan
    before = {k: v.clone() for k, v in trainer.task.model.state_dict().items()}
    from infinity_train.train import NonFiniteError

    with pytest.raises(NonFiniteError, match="3 steps in a row"):
        trainer.fit()
    assert trainer.state.skipped_steps == 4  # step 2, then steps 5, 6, 7
    assert trainer.state.step == 8
    # the last good checkpoint (step 4) is intact and nothing was saved after the non-finite streak began
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    after = trainer.task.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[2]["step"] == 3 and records[2]["optim/skipped_steps"] == 1
    assert records[-1]["step"] == 8 and records[-1]["optim/skipped_steps"] == 4  # the step that stopped the run is logged


def test_a_checkpoint_of_another_model_is_refused(tmp_path, data_root, trained_tokenizer, reference_run):
    checkpoint = reference_run / "checkpoints" / "step_00000010"
    overrides = [*tiny_overrides(data_root, tmp_path / "run", steps=12), f"tokenizer.checkpoint={trained_tokenizer}", "model.depth=2", f"resume={checkpoint}"]
    result = run_train(overrides)
    assert result.returncode == exit_codes.CONFIG_ERROR
    assert "another model configuration" in result.stderr and "depth: checkpoint 1 vs config 2" in result.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["tokenizer.checkpoint=/nonexistent/tokenizer.safetensors"], "does not exist"),
        ([], "needs a trained tokenizer"),
        (["tokenizer.checkpoint={tokenizer}", "resume=/nonexistent/step_00000004"], "is not a complete checkpoint"),
        (["tokenizer.checkpoint={tokenizer}", "world_size=3"], "world_size=3 was given but the launcher started 1"),
    ],
)
def test_missing_inputs_exit_with_one_line(tmp_path, data_root, trained_tokenizer, extra, message):
    extra = [item.format(tokenizer=trained_tokenizer) for item in extra]
    result = run_train([*tiny_overrides(data_root, tmp_path / "run"), *extra])
    assert result.returncode == exit_codes.CONFIG_ERROR, result.stderr[-2000:]
    assert message in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_cooldown_branch_starts_from_a_stable_phase_checkpoint(tmp_path, data_root, trained_tokenizer, reference_run):
    """A shorter budget branches off the long run's stable phase and cools down over its own last steps."""
    branch = tmp_path / "branch"
    overrides = [*tiny_overrides(data_root, branch, steps=25), f"tokenizer.checkpoint={trained_tokenizer}", f"init_from={reference_run / 'checkpoints' / 'step_00000020'}"]
    result = run_train(overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = train_losses(branch)
    assert sorted(losses) == list(range(21, 26))
    reference = train_losses(reference_run)
    assert losses[21] == reference[21]  # the same weights and batch: the loss comes before the first update
    records = [json.loads(line) for line in (branch / "metrics.jsonl").read_text().splitlines() if '"optim/lr"' in line]
    assert records[-1]["optim/lr"] == 0.0


def test_tokenizer_gan_and_reg_variant_train_both_units(tmp_path, data_root):
    """With the GAN on from step 2 the discriminator is a second trained unit; the reg variant adds
    partial-reconstruction losses. Both are checkpointed (LeCam's running means included) and resume."""
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides(data_root, run_dir, steps=4), "task=tokenizer", "tokenizer.loss.gan=0.3", "tokenizer.loss.gan_start_step=2",
        "tokenizer.loss.reg=true",
    ]
    result = run_train(overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train/loss"' in line]
    assert "disc/discriminator" not in records[1] and "train/gan" not in records[1]  # step 2: GAN still off (steps 0, 1)
    assert {"disc/discriminator", "disc/lecam", "train/gan", "optim/discriminator/grad_norm"} <= records[3].keys()
    assert "train/reg_partial_l1" in records[3]
    resumed = run_train([*overrides, f"resume={run_dir / 'checkpoints' / 'step_00000002'}", f"run_dir={tmp_path / 'again'}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert train_losses(tmp_path / "again") == {s: v for s, v in train_losses(run_dir).items() if s > 2}


def test_a_tokenizer_of_another_bit_width_is_refused(tmp_path, data_root, trained_tokenizer):
    result = run_train([*tiny_overrides(data_root, tmp_path / "run"), f"tokenizer.checkpoint={trained_tokenizer}", "tokenizer.d=16"])
    assert result.returncode == exit_codes.CONFIG_ERROR
    assert "has d=8 but the config says tokenizer.d=16" in result.stderr


def test_async_checkpoints_complete_and_resume(tmp_path, data_root, trained_tokenizer, reference_run):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(data_root, run_dir, steps=KILL_RUN_STEPS, logging__checkpoint_every=10), f"tokenizer.checkpoint={trained_tokenizer}", "logging.async_checkpoint=true"]
    trainer = signal_during_step(in_process_trainer(overrides), 24)
    assert trainer.fit() == exit_codes.REQUEUE
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000010", "step_00000020", "step_00000025"]
    assert in_process_trainer(overrides).fit() == exit_codes.OK
    assert train_losses(run_dir) == train_losses(reference_run)
