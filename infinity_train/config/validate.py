"""Start-up checks of values that the schema's types cannot express. All problems are collected and
reported together in one line, each phrased for the user."""

from __future__ import annotations

import dataclasses
import math
import re

from infinity_train import geometry
from infinity_train.geometry import SUPPORTED_D, latent_stride
from infinity_train.config.compose import ConfigError
from infinity_train.config.schema import (
    TokenizerKind,
    DataSource,
    ModelConfig,
    ScheduleName,
    Strategy,
    Task,
    TrainConfig,
)
from infinity_train.config.text_encoders import resolve_text_encoder
from infinity_train.sizing import family_shape, release_text_pool_heads

def model_shape(model: ModelConfig) -> tuple[int, int]:
    """(width, heads) of a model config, applying the depth dial's shape rule where unset."""
    return family_shape(model.depth, model.width, model.heads)


def _check_model(cfg: TrainConfig, problems: list[str]) -> None:
    m = cfg.model
    if m.depth < 1:
        problems.append(f"model.depth must be >= 1, got {m.depth}")
        return
    width, heads = model_shape(m)
    if width < 1 or heads < 1:
        problems.append(f"model.width and model.heads must be positive, got width={width} heads={heads}")
        return
    if width % heads:
        problems.append(f"model.heads={heads} must divide model.width={width}")
    elif (width // heads) % 4:
        problems.append(f"head dim {width // heads} (width {width} / heads {heads}) must be a multiple of 4 for 2-D RoPE")
    if m.mlp_ratio <= 0:
        problems.append(f"model.mlp_ratio must be positive, got {m.mlp_ratio}")
    for key in ("drop_path", "cond_drop"):
        value = getattr(m, key)
        if not 0.0 <= value < 1.0:
            problems.append(f"model.{key} must be in [0, 1), got {value}")
    if not 0.0 <= m.self_correction.prob <= 1.0:
        problems.append(f"model.self_correction.prob must be in [0, 1], got {m.self_correction.prob}")
    if m.self_correction.num_scales < 0:
        problems.append(f"model.self_correction.num_scales must be >= 0, got {m.self_correction.num_scales}")
    if not 0.0 <= m.loss.label_smoothing < 1.0:
        problems.append(f"model.loss.label_smoothing must be in [0, 1), got {m.loss.label_smoothing}")
    try:
        text_dim = resolve_text_encoder(m.text_encoder).dim
    except ValueError as error:
        problems.append(str(error))
        return
    _check_text_pool_heads(m, width, text_dim, problems)


def _check_text_pool_heads(m: ModelConfig, width: int, text_dim: int, problems: list[str]) -> None:
    if m.text_pool_heads is not None:
        if m.text_pool_heads < 1 or width % m.text_pool_heads:
            problems.append(f"model.text_pool_heads={m.text_pool_heads} must be >= 1 and divide model.width={width}")
        return
    heads = release_text_pool_heads(text_dim, width)
    if heads < 1 or width % heads:
        problems.append(
            f"the release's text-pool rule gives {heads} heads (text width {text_dim} / {64 if width > 4096 else 128}), "
            f"which does not divide model.width={width}: set model.text_pool_heads"
        )


def _check_tokenizer(cfg: TrainConfig, problems: list[str]) -> None:
    t = cfg.tokenizer
    if t.d not in SUPPORTED_D:
        problems.append(f"tokenizer.d={t.d} is not a supported bit width; choose one of {', '.join(map(str, SUPPORTED_D))}")
    if not t.channel_multipliers or any(c < 1 for c in t.channel_multipliers):
        problems.append(f"tokenizer.channel_multipliers must be positive integers, got {list(t.channel_multipliers)}")
    else:
        stride = 2 ** (len(t.channel_multipliers) - 1)
        wanted = latent_stride(t.patchify)
        if stride != wanted:
            problems.append(
                f"tokenizer.channel_multipliers has {len(t.channel_multipliers)} levels (stride {stride}); "
                f"{'patchify needs stride 8 (4 levels)' if t.patchify else 'stride 16 needs 5 levels'}"
            )
    if t.base_channels < 1 or t.encoder_res_blocks < 1 or t.decoder_res_blocks < 1:
        problems.append("tokenizer.base_channels, encoder_res_blocks and decoder_res_blocks must be >= 1")
    loss = t.loss
    for key in ("l1", "perceptual", "gan", "lecam", "quantizer", "entropy"):
        if getattr(loss, key) < 0:
            problems.append(f"tokenizer.loss.{key} must be >= 0, got {getattr(loss, key)}")
    if loss.gan_kind not in ("hinge", "non_saturating"):
        problems.append(f"tokenizer.loss.gan_kind must be hinge or non_saturating, got {loss.gan_kind!r}")
    if cfg.task == Task.tokenizer and t.kind == TokenizerKind.bsq and loss.perceptual > 0 and not loss.perceptual_weights:
        problems.append("tokenizer.loss.perceptual > 0 needs tokenizer.loss.perceptual_weights (a VGG feature weights file), or set it to 0")
    if t.lr <= 0:
        problems.append(f"tokenizer.lr must be positive, got {t.lr}")
    if t.pca.fit_images < 1:
        problems.append(f"tokenizer.pca.fit_images must be >= 1, got {t.pca.fit_images}")


def _check_data(cfg: TrainConfig, problems: list[str]) -> None:
    data = cfg.data
    try:
        n_scales = geometry.num_scales(data.resolution)
    except ValueError as error:
        problems.append(f"data.resolution: {error}")
        n_scales = None
    if n_scales is not None and n_scales > cfg.model.max_scales:
        problems.append(f"data.resolution {data.resolution} has {n_scales} scales but model.max_scales is {cfg.model.max_scales}")
    for ratio in data.aspect_ratios:
        try:
            geometry.resolve_template(ratio)
        except ValueError as error:
            problems.append(f"data.aspect_ratios: {error}")
    if data.source in (DataSource.webdataset, DataSource.cached) and not data.train_shards and not data.mixture:
        problems.append(f"data.source={data.source.value} needs data.train_shards (a shard pattern such as '/data/{{000000..000099}}.tar')")
    per_step = cfg.world_size * cfg.optim.grad_accum_steps
    if data.global_batch_size < 1:
        problems.append(f"data.global_batch_size must be >= 1, got {data.global_batch_size}")
    elif data.global_batch_size % per_step:
        problems.append(
            f"data.global_batch_size={data.global_batch_size} must divide evenly across {cfg.world_size} ranks "
            f"x {cfg.optim.grad_accum_steps} accumulation steps"
        )
    for source in data.mixture:
        if not source.weight > 0:
            problems.append(f"data.mixture weights must be > 0, got {source.weight} for {source.shards}")
    if data.mixture and data.source != DataSource.webdataset:
        problems.append("data.mixture reads WebDataset shards: set data.source=webdataset")
    if data.num_workers < 0:
        problems.append(f"data.num_workers must be >= 0, got {data.num_workers}")
    if not 0.0 <= data.short_caption_prob <= 1.0:
        problems.append(f"data.short_caption_prob must be in [0, 1], got {data.short_caption_prob}")
    if data.caption_tokens < 1:
        problems.append(f"data.caption_tokens must be >= 1, got {data.caption_tokens}")
    if data.synthetic_train_samples < 1 or data.synthetic_val_samples < 0:
        problems.append("data.synthetic_train_samples must be >= 1 and data.synthetic_val_samples >= 0")


def _check_parallel(cfg: TrainConfig, problems: list[str]) -> None:
    p = cfg.parallel
    if cfg.world_size < 1:
        problems.append(f"world_size must be >= 1, got {cfg.world_size}")
        return
    if p.strategy == Strategy.single and cfg.world_size > 1:
        problems.append(f"parallel=single runs one process but world_size is {cfg.world_size}; use parallel=ddp, fsdp, hsdp or zero*")
    if p.strategy == Strategy.hsdp and (p.replicate_degree < 1 or cfg.world_size % p.replicate_degree):
        problems.append(f"parallel.replicate_degree={p.replicate_degree} must divide world_size={cfg.world_size} for HSDP")
    if p.zero_stage not in (1, 2, 3):
        problems.append(f"parallel.zero_stage must be 1, 2 or 3, got {p.zero_stage}")
    if p.offload_optimizer and p.strategy != Strategy.deepspeed:
        problems.append("parallel.offload_optimizer is a DeepSpeed option; use parallel=zero1/zero2/zero3")
    if p.strategy == Strategy.deepspeed and cfg.task == Task.tokenizer:
        problems.append("task=tokenizer trains with parallel=single, ddp, fsdp or hsdp (its GAN has two optimizers); DeepSpeed is for the transformer")


def _check_optim(cfg: TrainConfig, problems: list[str]) -> None:
    o = cfg.optim
    if o.lr <= 0:
        problems.append(f"optim.lr must be positive, got {o.lr}")
    if o.lr_reference_batch < 1:
        problems.append(f"optim.lr_reference_batch must be >= 1, got {o.lr_reference_batch}")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        problems.append(f"optim.betas must be two numbers in [0, 1), got {list(o.betas)}")
    if o.eps <= 0 or o.weight_decay < 0 or o.grad_clip < 0:
        problems.append("optim.eps must be > 0, optim.weight_decay >= 0 and optim.grad_clip >= 0 (0 disables clipping)")
    if o.grad_accum_steps < 1:
        problems.append(f"optim.grad_accum_steps must be >= 1, got {o.grad_accum_steps}")
    if o.max_nonfinite_steps < 1:
        problems.append(f"optim.max_nonfinite_steps must be >= 1, got {o.max_nonfinite_steps}")
    if o.fused not in ("auto", "true", "false"):
        problems.append(f"optim.fused must be auto, true or false, got {o.fused!r}")


def _check_schedule(cfg: TrainConfig, problems: list[str]) -> None:
    s = cfg.schedule
    if s.total_steps < 1:
        problems.append(f"schedule.total_steps must be >= 1, got {s.total_steps}")
        return
    if not 0 <= s.warmup_steps < s.total_steps:
        problems.append(f"schedule.warmup_steps={s.warmup_steps} must be in [0, total_steps={s.total_steps})")
    if not 0.0 <= s.decay_fraction <= 1.0 or not 0.0 <= s.min_lr_ratio <= 1.0:
        problems.append("schedule.decay_fraction and schedule.min_lr_ratio must be in [0, 1]")
    elif s.name == ScheduleName.wsd and s.warmup_steps + round(s.decay_fraction * s.total_steps) > s.total_steps:
        problems.append("schedule: warmup_steps plus the cooldown (decay_fraction * total_steps) exceed total_steps")


def _check_logging(cfg: TrainConfig, problems: list[str]) -> None:
    lg = cfg.logging
    if lg.log_every < 1:
        problems.append(f"logging.log_every must be >= 1, got {lg.log_every}")
    if any(step < 1 for step in lg.checkpoint_steps):
        problems.append(f"logging.checkpoint_steps must be positive steps, got {list(lg.checkpoint_steps)}")
    for key in ("val_every", "sample_every", "checkpoint_every", "keep_every", "val_batches", "sample_prompts"):
        if getattr(lg, key) < 0:
            problems.append(f"logging.{key} must be >= 0, got {getattr(lg, key)}")
    if lg.keep_last < 1:
        problems.append(f"logging.keep_last must be >= 1, got {lg.keep_last}")
    if lg.progress not in ("auto", "bar", "lines"):
        problems.append(f"logging.progress must be auto, bar or lines, got {lg.progress!r}")


SLURM_TIME = re.compile(r"(?:\d+-)?\d+(?::\d+){0,2}")


def _check_cluster_and_sweep(cfg: TrainConfig, problems: list[str]) -> None:
    c = cfg.cluster
    if c.nodes < 1 or c.gpus_per_node < 0 or c.cpus_per_task < 1 or c.signal_lead_s < 0:
        problems.append("cluster.nodes and cluster.cpus_per_task must be >= 1, gpus_per_node and signal_lead_s >= 0")
    if c.time and not SLURM_TIME.fullmatch(c.time.strip()):
        problems.append(f"cluster.time={c.time!r} is not a Slurm time limit (MM, HH:MM:SS, D-HH, D-HH:MM:SS, such as 24:00:00)")
    bad_bits = [b for b in cfg.sweep.bits if b not in SUPPORTED_D]
    if bad_bits:
        problems.append(f"sweep.bits has unsupported bit widths {bad_bits}; choose from {', '.join(map(str, SUPPORTED_D))}")
    if any(dep < 1 for dep in cfg.sweep.depths) or any(b < 1 for b in cfg.sweep.image_budgets):
        problems.append("sweep.depths and sweep.image_budgets must be positive")
    if cfg.sweep.parallel_runs < 1:
        problems.append(f"sweep.parallel_runs must be >= 1, got {cfg.sweep.parallel_runs}")


def _non_finite(value: object, prefix: str = "") -> list[str]:
    """Dotted names of every NaN or infinite float in a config dataclass (comparisons are false for NaN, and
    an infinite value passes every ``>= 0`` check)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [name for f in dataclasses.fields(value) for name in _non_finite(getattr(value, f.name), f"{prefix}.{f.name}" if prefix else f.name)]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{prefix}={value}"]
    if isinstance(value, (list, tuple)):
        return [name for i, item in enumerate(value) for name in _non_finite(item, f"{prefix}[{i}]")]
    if isinstance(value, dict):
        return [name for k, item in value.items() for name in _non_finite(item, f"{prefix}.{k}")]
    return []


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ``ConfigError`` naming every invalid value; return ``cfg`` unchanged when all is well."""
    non_finite = _non_finite(cfg)
    if non_finite:
        raise ConfigError(f"invalid config: values must be finite numbers: {', '.join(non_finite)}")
    problems: list[str] = []
    for check in (_check_model, _check_tokenizer, _check_data, _check_parallel, _check_optim, _check_schedule, _check_logging, _check_cluster_and_sweep):
        check(cfg, problems)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return cfg
