"""Tiny end-to-end training runs shared by the trainer tests: the synthetic shards and a trained
tokenizer are made once per session; every test trains in its own run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY_TOKENIZER = [
    "tokenizer=cpu_d8",
    "tokenizer.base_channels=16",
    "tokenizer.channel_multipliers=[1,1,1,1,1]",
]


def tiny_overrides(data_root: Path, run_dir: Path, steps: int = 6, **extra: object) -> list[str]:
    """A debug1 transformer (tiny-t5 text encoder) on 64^2 synthetic data, batch 8, fp32 on CPU."""
    overrides = [
        "model=debug1",
        "model.text_encoder.name=tiny-t5",
        *TINY_TOKENIZER,
        "data=synthetic64",
        f"data.root={data_root}",
        "data.synthetic_train_samples=256",
        "data.synthetic_val_samples=32",
        "data.global_batch_size=8",
        "data.num_workers=0",
        "data.shuffle_buffer=64",
        "logging.wandb=disabled",
        "logging.log_every=1",
        "logging.val_every=0",
        "logging.checkpoint_every=2",
        "logging.keep_last=10",
        f"schedule.total_steps={steps}",
        "schedule.warmup_steps=1",
        "device=cpu",
        f"run_dir={run_dir}",
    ]
    overrides += [f"{k.replace('__', '.')}={v}" for k, v in extra.items()]
    return overrides


def command_env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )


def train_command(overrides: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "infinity_train.train", *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "infinity_train.train", *overrides]


def run_train(overrides: list[str], nproc: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(overrides, nproc), cwd=ROOT, env=command_env(), capture_output=True, text=True, timeout=timeout)


def kill_runs_of(run_dir: Path) -> int:
    """SIGKILL every process training in ``run_dir``: the launcher and its ranks (torchrun starts each
    rank in a session of its own, so killing the launcher's process group would leave them running)."""
    marker = f"run_dir={run_dir}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return killed


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss of every training record in metrics.jsonl."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            losses[record["step"]] = record["train/loss"]
    return losses


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic64")


@pytest.fixture(scope="session")
def trained_tokenizer(tmp_path_factory, data_root) -> Path:
    """A tokenizer run directory (2 steps: enough to have a real export for transformer runs), with the
    latent LayerNorm so that the transformer tests encode through it (the sweep tests train without)."""
    run_dir = tmp_path_factory.mktemp("tokenizer") / "run"
    overrides = [*tiny_overrides(data_root, run_dir, steps=2), "task=tokenizer", "logging.checkpoint_every=0", "tokenizer.latent_layernorm=true"]
    result = run_train(overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
