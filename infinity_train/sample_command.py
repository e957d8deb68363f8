"""``infinity-sample``: text-to-image sampling from a trained transformer run, written as a PNG grid.

    infinity-sample --run runs/debug2 --prompts "a red cube" "two blue spheres" --per-prompt 4 --out grid.png

    infinity-sample --checkpoint infinity_2b_reg.pth --tokenizer infinity_vae_d32_reg.pth \
        --set model.text_encoder.path=/models/flan-t5-xl --prompts "a dog" --resolution 1024

Rows of the grid are prompts, columns are samples. The run directory holds ``config.yaml`` and
``export/model.safetensors``; ``--checkpoint FILE --config FILE`` names them separately; a release
checkpoint needs no config (it is built from the file's shape, see ``infinity_train.weights``). Bad inputs
(a missing file, a checkpoint that does not fit the config, an unknown aspect template) exit with
status 2 and one line naming the problem. ``sample_images`` and ``save_grid`` are the reusable part
(the trainer's periodic sample grids call them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import OmegaConf

from infinity_train import geometry
from infinity_train.config import ConfigError, TrainConfig, to_typed, validate
from infinity_train.config.schema import Task
from infinity_train.models.infinity import InfinityTransformer
from infinity_train.models.sampling import eval_mode, generate_bits
from infinity_train.tokenizer import BitwiseTokenizer
from infinity_train.weights import TransformerWeights, load_weights, read_weights, release_config

log = logging.getLogger(__name__)

MODEL_FILE = Path("export") / "model.safetensors"
META_FILE = Path("export") / "meta.json"
CONFIG_FILE = "config.yaml"


class SampleError(ValueError):
    """A bad input to the sampling command, phrased as one line for the user."""


# ---------------------------------------------------------------- sampling (reusable)


def _precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 on the CPU."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu()


@torch.no_grad()
def sample_images(
    model: InfinityTransformer,
    tokenizer: BitwiseTokenizer,
    text_encoder,
    prompts: Sequence[str],
    schedule: Sequence[Sequence[int]],
    cfg: float = 3.0,
    tau: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    seed: int = 0,
    per_prompt: int = 1,
    return_bits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Generate ``per_prompt`` images for every prompt: (len(prompts) * per_prompt, H, W, 3) uint8, CPU
    (with ``return_bits``, also the sampled bits of every scale, (N, h, w, d) bool).

    Prompt-major order (all samples of prompt 0 first). One batch, KV-cached, CFG as a doubled batch;
    the same seed and inputs give the same images. ``model`` is the plain (unwrapped) transformer.
    """
    if not prompts:
        raise SampleError("sampling needs at least one prompt")
    if per_prompt < 1:
        raise SampleError(f"per_prompt must be >= 1, got {per_prompt}")
    if model.bits != tokenizer.token_dim:
        raise SampleError(f"the transformer predicts {model.bits} bits per token but the tokenizer has {tokenizer.token_dim}")
    device = next(model.parameters()).device
    captions = [prompt for prompt in prompts for _ in range(per_prompt)]
    encoded = text_encoder.encode(captions)
    weight_dtype = next(model.parameters()).dtype
    text = encoded.to(device, weight_dtype)
    with _precision(device), eval_mode(tokenizer):
        generated = generate_bits(
            model, text, schedule, cfg=cfg, tau=tau, top_k=top_k, top_p=top_p, generator=seed, patchify=tokenizer.patchify
        )
        images = tokenizer.decode(tokenizer.bits_to_latent(generated.bits, schedule))
    return (to_uint8(images), generated.bits) if return_bits else to_uint8(images)


def save_grid(images: torch.Tensor, path: str | Path, rows: int) -> Path:
    """Write (N, H, W, 3) uint8 images as one PNG, ``rows`` rows filled left to right, no gaps."""
    from PIL import Image

    if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {tuple(images.shape)} {images.dtype}")
    count, height, width, _ = images.shape
    if not 1 <= rows <= count:
        raise ValueError(f"rows must be in [1, {count}], got {rows}")
    columns = math.ceil(count / rows)
    grid = torch.zeros(rows * height, columns * width, 3, dtype=torch.uint8)
    for index, image in enumerate(images.cpu()):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.numpy()).save(path, format="PNG")
    return path


# ---------------------------------------------------------------- loading a run


def locate_run(run: str) -> tuple[Path, Path]:
    """(exported weights, config file) of a transformer run directory."""
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise SampleError(f"run directory {run_dir} does not exist")
    checkpoint_path, config_path = run_dir / MODEL_FILE, run_dir / CONFIG_FILE
    meta = run_dir / META_FILE
    if meta.is_file():
        try:
            task = json.loads(meta.read_text()).get("task")
        except (ValueError, AttributeError) as error:
            raise SampleError(f"{meta} is not a JSON object: {error}") from error
        if task != Task.transformer.value:
            raise SampleError(f"{run_dir} is a {task} run; sampling needs a transformer run")
    for what, path in (("config", config_path), ("checkpoint", checkpoint_path)):
        if not path.is_file():
            raise SampleError(f"{what} {path} does not exist")
    return checkpoint_path, config_path


def load_run_config(path: Path, tokenizer_checkpoint: str | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A run's resolved config.yaml, merged into the schema with ``overrides`` (key=value) and validated."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    except Exception as error:  # OmegaConf raises several types for unknown keys and wrong values
        raise ConfigError(f"{path}: {' '.join(str(error).split())}") from error
    if tokenizer_checkpoint is not None:
        merged.tokenizer.checkpoint = tokenizer_checkpoint
    cfg = validate(to_typed(merged))
    if cfg.task != Task.transformer:
        raise SampleError(f"{path} is the config of a {cfg.task.value} run; sampling needs a transformer run")
    return cfg


def load_transformer(cfg: TrainConfig, weights: TransformerWeights, device: torch.device) -> InfinityTransformer:
    """The config's transformer with ``weights`` (an export or a release checkpoint), strictly loaded, in eval mode."""
    from infinity_train.build import build_transformer

    model = build_transformer(cfg, device)
    load_weights(model, weights)
    return model.eval().requires_grad_(False)


def resolve_model(args: argparse.Namespace) -> tuple[TrainConfig, TransformerWeights]:
    """The config and weights ``--run`` / ``--checkpoint [--config]`` name. A release checkpoint needs no
    config: it is built from the file's shape, ``--tokenizer`` and ``--set``."""
    if args.run is not None:
        checkpoint, config = locate_run(args.run)
    else:
        checkpoint, config = Path(args.checkpoint), Path(args.config) if args.config else None
        if config is not None and not config.is_file():
            raise SampleError(f"config {config} does not exist")
    weights = read_weights(checkpoint)
    if config is not None:
        return load_run_config(config, args.tokenizer, args.set), weights
    if not weights.release_layout:
        raise SampleError(f"{checkpoint} is in this project's layout: pass --config (its run's config.yaml) or --run")
    if args.tokenizer is None:
        raise SampleError("a release checkpoint needs --tokenizer (e.g. infinity_vae_d32_reg.pth, which infinity_2b_reg.pth was trained on)")
    return release_config(weights, args.tokenizer, args.set), weights


# ---------------------------------------------------------------- command line


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SampleError("--device cuda but CUDA is not available")
    return torch.device(name)


def read_prompts(prompts: list[str] | None, prompts_file: str | None) -> list[str]:
    if prompts_file is None:
        return list(prompts or [])
    path = Path(prompts_file)
    if not path.is_file():
        raise SampleError(f"prompts file {path} does not exist")
    lines = [line.strip() for line in path.read_text().splitlines()]
    found = [line for line in lines if line]
    if not found:
        raise SampleError(f"prompts file {path} has no prompts (one per line)")
    return found


def resolve_schedule(cfg: TrainConfig, resolution: int | None, aspect: float) -> tuple[tuple[int, int], ...]:
    resolution = cfg.data.resolution if resolution is None else resolution
    try:
        schedule = geometry.scale_schedule(resolution, aspect)
    except ValueError as error:
        raise SampleError(str(error)) from error
    if len(schedule) > cfg.model.max_scales:
        raise SampleError(f"resolution {resolution} has {len(schedule)} scales but the model embeds {cfg.model.max_scales}")
    return schedule


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="infinity-sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="transformer run directory (config.yaml + export/model.safetensors)")
    source.add_argument(
        "--checkpoint",
        help="transformer weights: an export (.safetensors, with --config) or an Infinity release checkpoint "
        "(infinity_2b_reg.pth, a .safetensors copy or the 8B model's sharded directory; --config optional)",
    )
    parser.add_argument("--config", help="the run's resolved config.yaml (with --checkpoint)")
    parser.add_argument("--tokenizer", help="the tokenizer: overrides the config's tokenizer.checkpoint; required with a release checkpoint")
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="config overrides, e.g. model.text_encoder.path=/models/flan-t5-xl (Hydra syntax for a release checkpoint)",
    )
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompts", nargs="+", help="one or more captions")
    text.add_argument("--prompts-file", help="a text file with one caption per line")
    parser.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = none)")
    parser.add_argument("--tau", type=float, default=1.0, help="temperature on the bit logits")
    parser.add_argument("--top-k", type=int, default=0, help="per-bit top-k: 1 = greedy, 0 or 2 = sample")
    parser.add_argument(
        "--top-p", type=float, default=0.97,
        help="per-bit top-p in (0, 1]; 0 = off; default 0.97 as the release's gen_one_img (its top_k=900 keeps both values of a bit)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aspect", type=float, default=1.0, help=f"h/w template: {', '.join(f'{t:g}' for t in geometry.ASPECT_RATIOS)}")
    parser.add_argument("--resolution", type=int, default=None, help="default: the run's data.resolution")
    parser.add_argument("--per-prompt", type=int, default=4, help="images per prompt (grid columns)")
    parser.add_argument("--out", default="grid.png", help="PNG file to write")
    parser.add_argument("--save-bits", help="also write the sampled bits (bits/<scale>: (N, h, w, d) uint8) to this .safetensors file")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    if args.run is not None and args.config is not None:
        parser.error("--config goes with --checkpoint; --run reads <run>/config.yaml")
    return args


def check_sampling_args(args: argparse.Namespace) -> None:
    problems = []
    if args.tau <= 0:
        problems.append(f"--tau must be positive, got {args.tau}")
    if args.top_k < 0:
        problems.append(f"--top-k must be >= 0, got {args.top_k}")
    if not 0.0 <= args.top_p <= 1.0:
        problems.append(f"--top-p must be in [0, 1], got {args.top_p}")
    if args.per_prompt < 1:
        problems.append(f"--per-prompt must be >= 1, got {args.per_prompt}")
    if problems:
        raise SampleError("; ".join(problems))


def run(args: argparse.Namespace) -> Path:
    from infinity_train.build import build_text_encoder, load_trained_tokenizer

    check_sampling_args(args)
    prompts = read_prompts(args.prompts, args.prompts_file)
    try:
        cfg, weights = resolve_model(args)
        schedule = resolve_schedule(cfg, args.resolution, args.aspect)
        device = resolve_device(args.device)
        model = load_transformer(cfg, weights, device)
        del weights
        tokenizer = load_trained_tokenizer(cfg, device)
        text_encoder = build_text_encoder(cfg, device)
    except (FileNotFoundError, ValueError) as error:
        if isinstance(error, (SampleError, ConfigError)):
            raise
        raise SampleError(" ".join(str(error).split())) from error
    log.info("sampling %d prompts x %d at %s on %s", len(prompts), args.per_prompt, schedule[-1], device)
    images, bits = sample_images(
        model, tokenizer, text_encoder, prompts, schedule, cfg=args.cfg, tau=args.tau, top_k=args.top_k, top_p=args.top_p,
        seed=args.seed, per_prompt=args.per_prompt, return_bits=True,
    )
    if args.save_bits:
        save_bits(bits, args.save_bits)
    return save_grid(images, args.out, rows=len(prompts))


def save_bits(bits: Sequence[torch.Tensor], path: str | Path) -> Path:
    """Per-scale bits (N, h, w, d) as uint8 tensors ``bits/<scale>`` in one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"bits/{k}": b.to(torch.uint8).cpu().contiguous() for k, b in enumerate(bits)}, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        path = run(args)
    except (SampleError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
