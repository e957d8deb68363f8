"""A debug model memorizes four synthetic caption/image pairs through the real commands (tokenizer
run, transformer run, sampling CLI) and its samples reproduce the trained images for their prompts."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from data_pipelines.shards import expand_shards, iter_samples

from .conftest import ROOT, command_env, run_train, train_command

PAIRS = 4


def four_pair_overrides(data_root, run_dir, steps: int) -> list[str]:
    return [
        "model=debug2", "model.text_encoder.name=tiny-t5", "model.drop_path=0", "model.cond_drop=0", "model.self_correction.prob=0",
        "tokenizer=cpu_d8", "tokenizer.base_channels=16", "tokenizer.channel_multipliers=[1,1,1,1,1]",
        "data=synthetic64", f"data.root={data_root}", f"data.synthetic_train_samples={PAIRS}", "data.synthetic_val_samples=0",
        f"data.global_batch_size={PAIRS}", "data.num_workers=0", "data.short_caption_prob=1.0", "data.shuffle_buffer=1",
        "optim.lr=0.2", "optim.weight_decay=0", "logging.wandb=disabled", "logging.log_every=50", "logging.checkpoint_every=0",
        f"schedule.total_steps={steps}", "schedule.warmup_steps=10", "schedule.decay_fraction=0.3", "device=cpu", f"run_dir={run_dir}",
    ]


@pytest.mark.slow
def test_debug_model_memorizes_four_pairs_and_samples_them_back(tmp_path):
    data, tokenizer_run, transformer_run = tmp_path / "data", tmp_path / "tokenizer", tmp_path / "transformer"
    tokenizer = run_train([*four_pair_overrides(data, tokenizer_run, 300), "task=tokenizer", "tokenizer.lr=0.003"])
    assert tokenizer.returncode == 0, tokenizer.stderr[-3000:]
    result = run_train([*four_pair_overrides(data, transformer_run, 150), f"tokenizer.checkpoint={tokenizer_run}"])
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (transformer_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train/bit_accuracy"] > 0.95, records[-1]

    samples = [s for s in iter_samples(expand_shards(data, "train"))]
    captions = [json.loads(s["json"])["text"] for s in samples]
    originals = np.stack([np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB"), dtype=np.float32) / 255 for s in samples])
    grid = tmp_path / "grid.png"
    sampled = subprocess.run(
        [*train_command([])[:2], "infinity_train.sample_command", "--run", str(transformer_run), "--prompts", *captions,
         "--per-prompt", "1", "--cfg", "1", "--top-k", "1", "--out", str(grid), "--device", "cpu"],
        cwd=ROOT, env=command_env(), capture_output=True, text=True, timeout=300,
    )
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    picture = np.asarray(Image.open(grid).convert("RGB"), dtype=np.float32) / 255
    side = originals.shape[1]
    rows = picture.shape[0] // side
    cells = [picture[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(rows) for c in range(picture.shape[1] // side)]
    generated = np.stack(cells[:PAIRS])
    errors = np.abs(generated[:, None] - originals[None]).mean(axis=(2, 3, 4))  # sample x original
    assert (errors.argmin(axis=1) == np.arange(PAIRS)).all(), errors  # each prompt gives its own image back
    own, others = np.diag(errors), errors[~np.eye(PAIRS, dtype=bool)]
    assert own.max() < 0.6 * others.min(), errors
