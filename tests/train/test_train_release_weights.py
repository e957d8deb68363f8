"""Fine-tuning from the public release's weights: ``init_from=<release checkpoint>`` through the trainer."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from infinity_train.models.reference import from_reference, read_transformer_weights
from .conftest import TINY_TOKENIZER, run_train, tiny_overrides

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "reference_infinity"
RELEASE_FILE = GOLDEN / "infinity_t256.safetensors"
TINY_RELEASE_SHAPE = [  # `infinity-train describe` prints these for the tiny release file
    "model=family", "model.depth=2", "model.width=96", "model.heads=6", "model.mlp_ratio=5.333333333333333",
    "model.text_pool_heads=2", "model.text_encoder.dim=256", "tokenizer.d=16", f"tokenizer.checkpoint={GOLDEN / 'vae_d16.pth'}",
]


def release_overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    base = [o for o in tiny_overrides(data_root, run_dir, steps=2) if o != "model=debug1" and o not in TINY_TOKENIZER]
    return [*base, *TINY_RELEASE_SHAPE, f"init_from={RELEASE_FILE}", *extra]


def test_a_run_initialized_from_a_release_file_starts_at_its_weights(tmp_path, data_root):
    run_dir = tmp_path / "finetune"
    result = run_train(release_overrides(data_root, run_dir, "optim.lr=1e-12"))  # two steps that barely move
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initial weights from" in (run_dir / "logs" / "rank0.log").read_text()
    exported = load_file(str(run_dir / "export" / "model.safetensors"))
    release = from_reference(read_transformer_weights(RELEASE_FILE))
    assert exported.keys() == release.keys()
    assert max((exported[k] - release[k].float()).abs().max().item() for k in release) < 1e-8


def test_a_release_file_of_another_shape_is_refused_in_one_line(tmp_path, data_root):
    run_dir = tmp_path / "wrong"
    result = run_train(release_overrides(data_root, run_dir, "model.heads=4"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "does not fit this model: heads: file 6 vs model 4" in lines[0], result.stderr[-2000:]
