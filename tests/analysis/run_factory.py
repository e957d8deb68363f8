"""Realistic run directories for the analysis tests, laid out as the trainer writes them.

Sizes and FLOPs come from the project's own counter (``infinity_train.sizing``); the final
validation loss of every run follows a known law,
``L = E_d + A_d N^-alpha + B images^-beta`` (N = non-embedding parameters), times small
log-normal noise, so fits on collected runs can be checked against the truth.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from infinity_train import geometry
from infinity_train.sizing import TransformerShape, describe

RESOLUTION = 64
BATCH = 16
TEXT_DIM, TEXT_TOKENS = 384, 32


@dataclass(frozen=True)
class Law:
    # Per-bit losses; in bits per image (x d) d=8 wins at the smallest sizes and d=16 at the largest.
    E: dict[int, float] = field(default_factory=lambda: {8: 0.50, 16: 0.10})
    A: dict[int, float] = field(default_factory=lambda: {8: 30.0, 16: 26.3})
    alpha: float = 0.30
    B: float = 0.0
    beta: float = 0.35
    noise: float = 0.002
    # The d-independent measure (pixel MSE of images decoded from predicted bits): d=8 wins at the smallest
    # sizes, d=16 at the largest (crossover near depth 3-4).
    mse_E: dict[int, float] = field(default_factory=lambda: {8: 0.06, 16: 0.04})
    mse_A: dict[int, float] = field(default_factory=lambda: {8: 1.0, 16: 2.54})

    def mse(self, params: float, bits: int) -> float:
        return self.mse_E[bits] + self.mse_A[bits] * params**-self.alpha

    def loss(self, params: float, bits: int, images: float, rng: np.random.Generator) -> float:
        clean = self.E[bits] + self.A[bits] * params**-self.alpha + self.B * images**-self.beta
        return float(clean * math.exp(self.noise * rng.standard_normal()))


def size(depth: int, bits: int) -> dict:
    shape = TransformerShape(depth=depth, width=64 * depth, heads=depth, bits=bits, text_dim=TEXT_DIM, text_max_len=TEXT_TOKENS)
    return describe(shape, RESOLUTION, TEXT_TOKENS)


def config(name: str, depth: int, bits: int, images: int, task: str = "transformer", seed: int = 0) -> dict:
    return {
        "task": task,
        "name": name,
        "run_dir": None,
        "seed": seed,
        "model": {"name": "family", "depth": depth, "width": None, "heads": None, "mlp_ratio": 4.0},
        "tokenizer": {"name": f"cpu_d{bits}", "d": bits},
        "data": {"name": "synthetic64", "resolution": RESOLUTION, "global_batch_size": BATCH},
        "schedule": {"name": "wsd", "total_steps": images // BATCH, "warmup_steps": 20, "decay_fraction": 0.2},
        "logging": {"wandb": "offline", "log_every": 10, "val_every": 100},
    }


def write_run(
    run_dir: Path,
    *,
    depth: int,
    bits: int,
    images: int,
    law: Law,
    rng: np.random.Generator,
    complete: bool = True,
    samples: bool = False,
    nan_final: bool = False,
    start_step: int = 0,
    metrics: bool = True,
    seed: int = 0,
) -> float:
    """Write one run; returns its final validation loss (the law's value unless ``nan_final``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    description = size(depth, bits)
    params = description["parameters"]
    tokens_per_image = description["schedule"]["tokens_per_image"]
    flops_per_image = description["flops_per_image"]["train"]
    total_steps = images // BATCH
    last_step = total_steps if complete else total_steps // 2
    final_loss = law.loss(params["non_embedding"], bits, images, rng)
    name = run_dir.name
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config(name, depth, bits, images, seed=seed)))
    (run_dir / "run.json").write_text(json.dumps({"name": name, "wandb_id": f"{name}-0123abcd", "created": 1.7e9}))

    mse = law.mse(params["non_embedding"], bits) * math.exp(law.noise * rng.standard_normal())
    records = list(_records(start_step, last_step, total_steps, final_loss, depth, bits, tokens_per_image, flops_per_image, nan_final, mse))
    if metrics:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if complete:
        final = {k: v for k, v in records[-1].items() if k.startswith("val/")}
        summary = {
            "status": "complete",
            "step": total_steps,
            "images_seen": total_steps * BATCH,
            "tokens_seen": total_steps * BATCH * tokens_per_image,
            "train_flops": total_steps * BATCH * flops_per_image,
            "wall_time_s": 12.5 * depth,
            "params_total": params["total"],
            "params_non_embedding": params["non_embedding"],
            "depth": depth,
            "width": 64 * depth,
            "d": bits,
            "token_bits": bits,
            "final": final,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
    if samples:
        _write_png(run_dir / "samples" / "final.png", seed=depth * 100 + bits)
    return final_loss


def write_sweep(
    root: Path,
    depths: list[int],
    bits: list[int],
    law: Law,
    *,
    budgets: list[int] = (8192,),
    seed: int = 0,
    samples: bool = False,
) -> dict[str, float]:
    """One run per (depth, d) trained to the largest budget, with a cooldown branch for each smaller one.

    Returns run name -> final validation loss.
    """
    rng = np.random.default_rng(seed)
    budgets = sorted(budgets)
    losses = {}
    for depth in depths:
        for d in bits:
            name = f"depth{depth}_d{d}"
            run_dir = root / name
            losses[name] = write_run(run_dir, depth=depth, bits=d, images=budgets[-1], law=law, rng=rng, samples=samples)
            for images in budgets[:-1]:
                branch = f"{name}/branches/{images}"
                start = int(0.8 * images // BATCH)
                losses[branch] = write_run(root / branch, depth=depth, bits=d, images=images, law=law, rng=rng, start_step=start)
    return losses


def _records(start, last_step, total_steps, final_loss, depth, bits, tokens_per_image, flops_per_image, nan_final, mse):
    n_scales = geometry.num_scales(RESOLUTION)
    pixels = RESOLUTION * RESOLUTION
    for step in [*range(start + 10, last_step, 10), last_step]:
        progress = step / total_steps
        loss = final_loss * (1.0 + 0.5 * (1.0 - progress) ** 2)
        images = step * BATCH
        record = {
            "step": step,
            "time": 1.7e9 + step * 0.05,
            "train/loss": loss * 1.01,
            "train/bit_accuracy": 0.6 + 0.1 * progress,
            "train/token_accuracy": 0.01 * progress,
            "optim/lr": 1e-3,
            "optim/grad_norm": 0.5,
            "throughput/images_per_s": 300.0,
            "throughput/tokens_per_s": 300.0 * tokens_per_image,
            "throughput/tflops_per_s": 1.0,
            "throughput/mfu": "nan",
            "progress/images_seen": images,
            "progress/tokens_seen": images * tokens_per_image,
            "progress/train_flops": images * flops_per_image,
        }
        record |= {f"train/bit_accuracy_scale/{k}": 0.55 + 0.05 * k for k in range(n_scales)}
        if step % 100 == 0 or step == last_step:
            record |= _val_metrics(loss, depth, bits, tokens_per_image, pixels, n_scales, progress)
            record |= {"val/mse_expected": mse, "val/psnr_expected": 10 * math.log10(4.0 / mse)}
            record |= {"val/mse_predicted": 1.2 * mse, "val/psnr_predicted": 10 * math.log10(4.0 / (1.2 * mse))}
            if nan_final and step == last_step:
                record |= {"val/loss": "nan", "val/ce_per_bit": "nan", "val/bits_per_image": "nan", "val/bits_per_pixel": "nan"}
        yield record


def _val_metrics(loss, depth, bits, tokens_per_image, pixels, n_scales, progress):
    ce_per_bit = 1.02 * loss
    per_image = ce_per_bit / math.log(2.0) * bits * tokens_per_image
    metrics = {
        "val/loss": loss,
        "val/ce_per_bit": ce_per_bit,
        "val/bits_per_token": ce_per_bit / math.log(2.0) * bits,
        "val/bits_per_image": per_image,
        "val/bits_per_pixel": per_image / pixels,
        "val/bit_accuracy": 0.6 + 0.15 * progress,
        "val/token_accuracy": 0.02 * progress,
        "val/checker_score": 0.5,
    }
    return metrics | {f"val/bit_accuracy_scale/{k}": 0.9 - 0.1 * k + 0.01 * depth + 0.05 * progress for k in range(n_scales)}


def _write_png(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(32, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
