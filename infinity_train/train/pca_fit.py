"""``task=tokenizer tokenizer.kind=pca``: fit the linear PCA tokenizer instead of training the CNN one.

Writes the same run directory as a trained tokenizer: config.yaml, metrics.jsonl (one validation
record), export/tokenizer.safetensors (+ meta.json) and summary.json with the held-out PSNR, SSIM and
L1, the PSNR after each prefix of scales (``val/psnr_scales/<k>``: scales 1..k+1 decoded), and the
parent-bit dependence of the scales. Deterministic: the first ``tokenizer.pca.fit_images`` training
images in the reader's order for the run's seed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from data_pipelines.reader import to_model_range
from infinity_train import exit_codes, geometry
from infinity_train.config.schema import DataSource, TrainConfig
from infinity_train.console import setup_logging
from infinity_train.distributed import World, detect_world
from infinity_train.run_dir import MetricsFile, RunDirectory, _atomic_write, _json_safe
from infinity_train.tokenizer.image_metrics import psnr, ssim
from infinity_train.tokenizer.pca_tokenizer import PcaTokenizer
from infinity_train.tokenizer.quantizer import parent_bit_dependence
from infinity_train.train.data import HeldOutSet, build_train_reader, has_held_out, prepare_synthetic

log = logging.getLogger(__name__)
EXPORT_NAME = "tokenizer.safetensors"


def collect_images(reader: Any, count: int) -> torch.Tensor:
    images: list[torch.Tensor] = []
    total = 0
    for batch in reader:
        images.append(to_model_range(batch["images"]))
        total += images[-1].shape[0]
        if total >= count:
            break
    if not images:
        raise ValueError("the training split gave no images to fit the PCA tokenizer on")
    return torch.cat(images)[:count]


@torch.no_grad()
def held_out_metrics(tokenizer: PcaTokenizer, batches: Any, resolution: int) -> dict[str, float]:
    sums: dict[str, float] = {}
    count = 0
    for batch in batches:
        images = to_model_range(batch["images"])
        schedule = geometry.scale_schedule(resolution, batch["h_div_w"])
        latent = tokenizer.encode(images)
        bits = tokenizer.latent_to_bits(latent, schedule)
        reconstruction = tokenizer.bits_to_image(bits, schedule)
        n = images.shape[0]
        count += n
        add = {
            "psnr": float(psnr(reconstruction, images).sum()),
            "ssim": float(ssim(reconstruction, images).sum()),
            "l1": float((reconstruction - images).abs().mean()) * n,
            "latent_norm": float(latent.norm(dim=1).mean()) * n,
        }
        for k in range(len(schedule)):
            add[f"psnr_scales/{k}"] = float(psnr(tokenizer.bits_to_image(bits[: k + 1], schedule), images).sum())
        if len(bits) > 1:
            add["parent_bit_dependence"] = float(parent_bit_dependence(bits).mean()) * n
        for key, value in add.items():
            sums[key] = sums.get(key, 0.0) + value
    if count == 0:
        raise ValueError("the held-out split gave no images to evaluate the PCA tokenizer on")
    return {f"val/{key}": value / count for key, value in sums.items()} | {"val/images": float(count)}


def fit_pca_run(cfg: TrainConfig, resolved: DictConfig, world: World) -> int:
    if world.world_size != 1:  # e.g. a sweep's tokenizer job on a multi-node Slurm cluster
        if not world.is_main:
            print(f"[rank {world.rank}] a PCA tokenizer is fitted by rank 0 alone: nothing to do here", file=sys.stderr)
            return exit_codes.OK
        world = detect_world({})  # a single process: rank 0 reads every shard
    started = time.perf_counter()
    run_dir = RunDirectory.for_config(resolved).create(resolved)
    setup_logging(run_dir.logs_dir, world.rank)
    if cfg.data.source == DataSource.synthetic:
        prepare_synthetic(cfg.data, world)
    elif cfg.data.source == DataSource.cached:
        raise ValueError("tokenizer.kind=pca is fitted on images: use data.source=synthetic or webdataset, not cached shards")
    torch.manual_seed(cfg.seed)
    reader = build_train_reader(cfg.data, world, cfg.data.global_batch_size, cfg.seed)
    images = collect_images(reader, cfg.tokenizer.pca.fit_images)
    schedule = geometry.scale_schedule(cfg.data.resolution, 1.0)
    tokenizer = PcaTokenizer(cfg.tokenizer.d)
    stats = tokenizer.fit(images, schedule)
    log.info("PCA tokenizer d=%d fitted on %d images: explained variance %.3f, latent rms %.3f",
             tokenizer.d, images.shape[0], stats["explained_variance"], stats["latent_rms"])
    metrics: dict[str, float] = {f"fit/{k}": v for k, v in stats.items()} | {"fit/images": float(images.shape[0])}
    if has_held_out(cfg.data):
        held_out = HeldOutSet(cfg.data, world, cfg.data.global_batch_size, cfg.seed)
        metrics |= held_out_metrics(tokenizer, held_out.batches(), cfg.data.resolution)
    MetricsFile(run_dir.metrics_path).write(0, metrics)
    export = run_dir.path / "export" / EXPORT_NAME
    write_pca_export(tokenizer, export, {"task": "tokenizer", "kind": "pca", "d": tokenizer.d, "fit_images": int(images.shape[0]), "seed": cfg.seed})
    seconds = time.perf_counter() - started
    summary = {
        "status": "complete", "task": "tokenizer", "kind": "pca", "step": 0, "images_seen": int(images.shape[0]),
        "tokens_seen": 0, "train_flops": 0.0, "wall_time_s": seconds, "skipped_steps": 0, "world_size": 1,
        "params_total": 0, "params_non_embedding": 0, "d": tokenizer.d, "token_bits": tokenizer.token_dim,
        "source": f"fitted in this run: whitened patch PCA on {images.shape[0]} training images (seed {cfg.seed})",
        "export": str(export), "final": metrics,
    }  # fmt: skip
    _atomic_write(run_dir.path / "summary.json", json.dumps(_json_safe(summary), indent=2) + "\n")
    log.info("PCA tokenizer: held-out PSNR %.2f dB (%s) in %.1f s; summary in %s", metrics.get("val/psnr", float("nan")),
             " / ".join(f"{metrics[k]:.2f}" for k in sorted(metrics) if k.startswith("val/psnr_scales/")), seconds, run_dir.path / "summary.json")
    return exit_codes.OK


def write_pca_export(tokenizer: PcaTokenizer, path: Path, metadata: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tokenizer.file_state(), str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, path)
    (path.parent / "meta.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return path
