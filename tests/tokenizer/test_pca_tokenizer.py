"""The fitted PCA tokenizer (tokenizer.kind=pca): deterministic fit, latent scale, every scale used,
file round trip through the loaders the transformer runs use, and one-line errors on bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from infinity_train import geometry
from infinity_train.build import build_tokenizer, load_trained_tokenizer
from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.tokenizer import load_tokenizer_checkpoint
from infinity_train.tokenizer.image_metrics import psnr
from infinity_train.tokenizer.pca_tokenizer import LATENT_RMS_FACTOR, PcaTokenizer
from infinity_train.train.pca_fit import write_pca_export

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = geometry.scale_schedule(64, 1.0)


def images(n: int, seed: int) -> torch.Tensor:
    """Smooth colour fields with a few sharp-edged squares, in [-1, 1]: structure at every scale."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.randn(n, 3, 4, 4, generator=g), size=(64, 64), mode="bilinear", align_corners=False)
    mid = F.interpolate(torch.randn(n, 3, 16, 16, generator=g), size=(64, 64), mode="bilinear", align_corners=False)
    x = 0.5 * coarse + 0.3 * mid
    for i in range(n):
        r, c = torch.randint(0, 48, (2,), generator=g).tolist()
        x[i, :, r : r + 16, c : c + 16] += torch.randn(3, 1, 1, generator=g)
    return x.clamp(-1, 1)


@pytest.fixture(scope="module")
def fitted() -> tuple[PcaTokenizer, torch.Tensor]:
    tokenizer = PcaTokenizer(16)
    tokenizer.fit(images(64, seed=0), SCHEDULE)
    return tokenizer, images(16, seed=1)


def test_the_fit_is_deterministic_and_scales_the_latent(fitted):
    tokenizer, _ = fitted
    again = PcaTokenizer(16)
    stats = again.fit(images(64, seed=0), SCHEDULE)
    for key in ("mean", "encoder", "decoder", "decoder_bias"):
        assert torch.equal(getattr(tokenizer, key), getattr(again, key)), key
    # whitened channels at LATENT_RMS_FACTOR code steps (1/sqrt(d)) on the fitting images
    assert stats["latent_rms"] == pytest.approx(LATENT_RMS_FACTOR / math.sqrt(16), rel=1e-3)
    assert 0 < stats["explained_variance"] <= 1


def test_every_added_scale_raises_held_out_psnr(fitted):
    tokenizer, held_out = fitted
    bits = tokenizer.image_to_bits(held_out, SCHEDULE)
    assert [tuple(b.shape[1:3]) for b in bits] == [tuple(g) for g in SCHEDULE]
    values = [float(psnr(tokenizer.bits_to_image(bits[: k + 1], SCHEDULE), held_out).mean()) for k in range(len(SCHEDULE))]
    assert all(b > a + 0.3 for a, b in zip(values, values[1:])), values


def test_the_file_round_trips_through_the_transformer_loader(fitted, tmp_path):
    tokenizer, held_out = fitted
    path = write_pca_export(tokenizer, tmp_path / "run" / "export" / "tokenizer.safetensors", {"kind": "pca"})
    loaded = load_tokenizer_checkpoint(path)
    assert isinstance(loaded, PcaTokenizer) and loaded.d == 16 and loaded.token_dim == 16
    bits = tokenizer.image_to_bits(held_out, SCHEDULE)
    assert all(torch.equal(a, b) for a, b in zip(bits, loaded.image_to_bits(held_out, SCHEDULE)))
    assert torch.equal(tokenizer.bits_to_image(bits, SCHEDULE), loaded.bits_to_image(bits, SCHEDULE))

    cfg = validate(to_typed(load_config(["tokenizer=pca", "tokenizer.d=16", f"tokenizer.checkpoint={tmp_path / 'run'}"])))
    assert isinstance(load_trained_tokenizer(cfg), PcaTokenizer)
    assert isinstance(build_tokenizer(cfg), PcaTokenizer)
    wrong_kind = validate(to_typed(load_config(["tokenizer=cpu_d16", f"tokenizer.checkpoint={tmp_path / 'run'}"])))
    with pytest.raises(ValueError, match="is a pca tokenizer but the config says tokenizer.kind=bsq"):
        load_trained_tokenizer(wrong_kind)


def test_bad_input_gives_one_line_errors(fitted, tmp_path):
    tokenizer, _ = fitted
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        load_config(["tokenizer.kind=vq"])
    with pytest.raises(RuntimeError, match="not fitted"):
        PcaTokenizer(8).decode(torch.zeros(1, 8, 4, 4))
    state = tokenizer.file_state()
    del state["pca.decoder"]
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="missing pca.decoder"):
        load_tokenizer_checkpoint(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="at least 32 patches"):
        PcaTokenizer(16).fit(images(1, seed=0), SCHEDULE)


def test_a_missing_fitted_file_is_a_one_line_error(tmp_path, capsys):
    from infinity_train.train.entry import main

    status = main([
        "tokenizer=pca", "tokenizer.d=16", f"tokenizer.checkpoint={tmp_path / 'nothing'}", "model=debug1", "model.text_encoder.name=tiny-t5",
        f"run_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}", "data.synthetic_train_samples=16", "data.synthetic_val_samples=0",
        "logging.wandb=disabled", "device=cpu",
    ])  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(lines) == 1 and "does not exist" in lines[0], lines


def test_the_fit_run_reads_the_reader_batches_in_model_range(tmp_path):
    """task=tokenizer tokenizer=pca through the real entry point: the reader's uint8 batches are fitted in
    [-1, 1] (fitted on 0..255 the held-out PSNR would be near 0 dB), and under a multi-rank launcher rank 0
    fits alone while the other ranks have nothing to do."""
    import json

    from infinity_train.distributed import World
    from infinity_train.train.entry import main
    from infinity_train.train.pca_fit import fit_pca_run

    overrides = [
        "task=tokenizer", "tokenizer=pca", "tokenizer.d=8", f"run_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}",
        "data.synthetic_train_samples=64", "data.synthetic_val_samples=16", "tokenizer.pca.fit_images=64", "logging.wandb=disabled", "device=cpu",
    ]  # fmt: skip
    assert main(overrides) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["d"] == 8 and summary["token_bits"] == 8
    assert 12.0 < summary["final"]["val/psnr"] < 40.0, summary["final"]

    cfg_overrides = [o.replace(str(tmp_path / "run"), str(tmp_path / "rank1")) for o in overrides] + ["world_size=2", "parallel=ddp"]
    resolved = load_config(cfg_overrides)
    rank1 = World(1, 1, 2, 2, 0, 1, "127.0.0.1", 29500, "torchrun")
    assert fit_pca_run(validate(to_typed(resolved)), resolved, rank1) == 0
    assert not (tmp_path / "rank1").exists()
