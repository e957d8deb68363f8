"""``infinity-data``: command-line data tools.

    python -m data_pipelines.cli synthetic --out DIR --num-samples N --resolution R [...]
    python -m data_pipelines.cli check --shards PATTERN_OR_DIR [--split S] [--limit N]
    python -m data_pipelines.cli from-folder FOLDER --out DIR [--split S] [--samples-per-shard N]
    python -m data_pipelines.cli from-manifest MANIFEST.{csv,jsonl} --out DIR [...]
    python -m data_pipelines.cli validate-wds --shards DIR_OR_PATTERN [--split S]
    infinity-data cache --shards RAW --out DIR --tokenizer CKPT --resolution R [...]

``infinity-data`` is ``infinity_train.data_cli``: these commands plus ``cache``, which loads the
project's tokenizer and text encoder and so lives in ``infinity_train`` (``data_pipelines`` does not
import the model code). Each subcommand is an ``add_<name>_command(subparsers)`` function that registers its arguments
and sets ``run``. Bad arguments print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from infinity_train.geometry import ASPECT_RATIOS, SUPPORTED_RESOLUTIONS

from .cli_support import PROG, Parser, Progress, UsageError, parse_aspect_ratios, require_at_least
from .cli_support import join_values as _join
from .commands.writing import add_from_folder_command, add_from_manifest_command, add_validate_wds_command


# ---- synthetic ---------------------------------------------------------------------------------


def add_synthetic_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synthetic",
        help="write the synthetic compositional dataset (train and val splits) as WebDataset shards",
        description="Write the synthetic shapes dataset as {split}-NNNNNN.tar shards plus manifest.json. "
        "Deterministic for a seed; re-running with the same arguments skips finished shards.",
    )
    parser.add_argument("--out", required=True, help="output directory (shared by the train and val splits)")
    parser.add_argument("--num-samples", type=int, required=True, help="training samples")
    parser.add_argument("--resolution", type=int, required=True, help=f"square side in pixels: {_join(SUPPORTED_RESOLUTIONS)}")
    parser.add_argument(
        "--aspect-ratios", default="1.0", help=f"comma-separated h/w templates used round-robin (default 1.0); templates: {_join(ASPECT_RATIOS)}"
    )
    parser.add_argument("--val-samples", type=int, default=None, help="validation samples (default: 10%% of --num-samples, at most 256; 0 for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", dest="image_format", choices=("png", "jpg"), default="png", help="image encoding (jpg: quality 95, 4:4:4)")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.set_defaults(run=run_synthetic)


def run_synthetic(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic import write_synthetic_dataset

    if args.resolution not in SUPPORTED_RESOLUTIONS:
        raise UsageError(f"{PROG} synthetic: error: --resolution {args.resolution} is not supported; choose one of {_join(SUPPORTED_RESOLUTIONS)}")
    aspect_ratios = parse_aspect_ratios(args.aspect_ratios, "synthetic")
    require_at_least(
        "synthetic", (("--num-samples", args.num_samples, 1), ("--samples-per-shard", args.samples_per_shard, 1), ("--val-samples", args.val_samples, 0))
    )
    val_samples = min(256, max(1, args.num_samples // 10)) if args.val_samples is None else args.val_samples

    for split, count in (("train", args.num_samples), ("val", val_samples)):
        if count == 0:
            continue
        progress = Progress(count, f"synthetic {split}")
        try:
            report = write_synthetic_dataset(
                args.out,
                num_samples=count,
                resolution=args.resolution,
                aspect_ratios=aspect_ratios,
                samples_per_shard=args.samples_per_shard,
                seed=args.seed,
                image_format=args.image_format,
                split=split,
                progress=progress,
            )
        finally:
            progress.close()
        print(report.summary())
    return 0


# ---- check -------------------------------------------------------------------------------------


def add_check_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="run the synthetic-scene checker over shards and print per-criterion accuracies",
        description="Judge every sample's image against its scene spec (json 'spec') with the GenEval-style "
        "checker. On ground-truth shards this measures the checker's own accuracy; on shards of generated "
        "images it scores the generator. Prints a table, then the same numbers as one JSON line.",
    )
    parser.add_argument("--shards", required=True, help="a shard directory (uses its manifest.json) or a brace pattern")
    parser.add_argument("--split", default=None, help="with a directory: only this split (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="check at most this many samples")
    parser.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from PIL import Image

    from data_pipelines.shards import expand_shards, iter_samples
    from data_pipelines.synthetic import CheckerTally, SceneSpec, check

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"{PROG} check: error: --limit must be >= 1, got {args.limit}")
    try:
        paths = expand_shards(args.shards, args.split)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"{PROG} check: error: {error}") from None

    tally, skipped = CheckerTally(), 0
    progress = Progress(args.limit, "check")
    for sample in iter_samples(paths):
        image_bytes = next((sample[ext] for ext in ("png", "jpg", "jpeg", "webp") if ext in sample), None)
        metadata = json.loads(sample["json"]) if "json" in sample else {}
        if image_bytes is None or "spec" not in metadata:
            skipped += 1
            continue
        spec = SceneSpec.from_dict(metadata["spec"])
        tally.add(check(spec, Image.open(io.BytesIO(image_bytes))), spec.kind)
        progress(1)
        if args.limit is not None and tally.num_images >= args.limit:
            break
    progress.close()
    if tally.num_images == 0:
        raise UsageError(f"{PROG} check: error: no samples with an image and a 'spec' in {args.shards}")
    print(tally.table())
    if skipped:
        print(f"(skipped {skipped} samples without an image or a spec)")
    print(json.dumps({"shards": str(args.shards), **tally.summary(), "skipped": skipped}, sort_keys=True))
    return 0


# ---- entry point -------------------------------------------------------------------------------


def build_parser(extra_commands: Sequence[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Data tools for infinity-train.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    add_synthetic_command(subparsers)
    add_check_command(subparsers)
    add_from_folder_command(subparsers)
    add_from_manifest_command(subparsers)
    add_validate_wds_command(subparsers)
    for add_command in extra_commands:  # commands that need the model code (``infinity-data cache``)
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, extra_commands: Sequence[Callable[[Any], None]] = ()) -> int:
    try:
        args = build_parser(extra_commands).parse_args(argv)
        return args.run(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help and --version exit through argparse
        return exit_.code if isinstance(exit_.code, int) else 0
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
