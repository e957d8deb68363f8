"""``infinity-data cache``: precompute tokenizer latents/bits and caption embeddings of raw shards.

It lives here, not in ``data_pipelines``, because it loads this package's tokenizer and text encoder:
``data_pipelines`` sits below ``infinity_train`` and imports only its geometry (docs/architecture.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from data_pipelines.cli_support import PROG, Progress, UsageError, join_values, parse_aspect_ratios, require_at_least
from infinity_train.geometry import SUPPORTED_RESOLUTIONS


def add_cache_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="precompute tokenizer latents + bits and text embeddings of raw shards into cached shards",
        description="For every usable sample of raw image-text shards, store the tokenizer's continuous latent F "
        "(fp16), its per-scale bits for the template's schedule (packed) and the long and short captions' text "
        "embeddings (fp16), as safetensors members of new shards plus manifest.json. Read them with "
        "data_pipelines.cache.build_cached_reader (data.source=cached). Re-running resumes after the last finished shard.",
    )
    parser.add_argument("--shards", required=True, help="raw shards: a directory, brace pattern or pipe: command")
    parser.add_argument("--out", required=True, help="output directory of the cached shards")
    parser.add_argument("--tokenizer", required=True, help="tokenizer checkpoint (.safetensors, or a weights-only .pt/.pth)")
    parser.add_argument("--resolution", type=int, required=True, help="square side in pixels; the cache holds this resolution only")
    parser.add_argument("--aspect-ratios", default=None, help="comma-separated h/w templates images are bucketed to (default: all 15)")
    parser.add_argument("--split", default=None, help="with a directory: read only this split, and name the cached shards after it")
    parser.add_argument("--prefix", default=None, help="cached shard name prefix (default: --split, else train)")
    parser.add_argument("--text-encoder", default="minilm", help="text encoder name (infinity_train.text.KNOWN_TEXT_ENCODERS; default minilm)")
    parser.add_argument("--text-encoder-path", default=None, help="local weights directory or cached Hugging Face repo id")
    parser.add_argument("--max-length", type=int, default=None, help="caption token limit (default: the encoder's)")
    parser.add_argument("--batch-size", type=int, default=16, help="images (and captions) per model call")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing cache split made with other settings")
    parser.set_defaults(run=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    if args.resolution not in SUPPORTED_RESOLUTIONS:
        raise UsageError(f"{PROG} cache: error: --resolution {args.resolution} is not supported; choose one of {join_values(SUPPORTED_RESOLUTIONS)}")
    require_at_least("cache", (("--batch-size", args.batch_size, 1), ("--max-length", args.max_length, 1)))
    aspect_ratios = parse_aspect_ratios(args.aspect_ratios, "cache") if args.aspect_ratios is not None else None
    if not Path(args.tokenizer).is_file():
        raise UsageError(f"{PROG} cache: error: --tokenizer {args.tokenizer} is not a file")
    models = _load_models(args)

    from data_pipelines.cache import write_cache

    progress = Progress(None, "cache")
    try:
        report = write_cache(
            args.shards,
            args.out,
            models,
            resolution=args.resolution,
            aspect_ratios=aspect_ratios,
            split=args.split,
            prefix=args.prefix or args.split or "train",
            batch_size=args.batch_size,
            device=args.device,
            overwrite=args.overwrite,
            progress=progress,
        )
    except (FileExistsError, ValueError) as error:
        raise UsageError(f"{PROG} cache: error: {error}") from None
    finally:
        progress.close()
    summary = report.summary()
    skipped = ", ".join(f"{k}={v}" for k, v in summary["skipped"].items()) or "none"
    print(
        f"{report.prefix}: {summary['samples']} cached samples in {summary['shards']} shards "
        f"({summary['shards_kept']} kept from an earlier run) -> {report.directory}; skipped {summary['skipped_total']} ({skipped})"
    )
    print(json.dumps({"out": str(report.directory), "prefix": report.prefix, **summary}, sort_keys=True))
    if summary["samples"] == 0:
        print(f"{PROG} cache: error: no sample could be cached", file=sys.stderr)
        return 1
    return 0


def _load_models(args: argparse.Namespace) -> Any:
    from data_pipelines.cache import CacheModels
    from infinity_train.text import TextEncoder
    from infinity_train.tokenizer import load_tokenizer_checkpoint

    try:
        tokenizer = load_tokenizer_checkpoint(args.tokenizer)
        text_encoder = TextEncoder.from_config(args.text_encoder, args.text_encoder_path, args.max_length, "auto", args.device)
    except ValueError as error:
        raise UsageError(f"{PROG} cache: error: {error}") from None
    return CacheModels.identified(tokenizer, text_encoder, args.tokenizer, args.text_encoder_path)
