"""``infinity-data from-folder``, ``from-manifest`` and ``validate-wds``.

Each prints one human line and then the same numbers as one JSON line. Exit status: 0 when
samples were written (validated), 1 when none could be, 2 for a bad command line or input that
cannot be read at all (nothing is written then).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from data_pipelines.cli_support import PROG, Progress, UsageError, require_at_least

DEFAULT_SAMPLES_PER_SHARD = 1000


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory for the shards and manifest.json")
    parser.add_argument("--split", default="train", help="split name; shards are {split}-NNNNNN.tar (default train)")
    parser.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD)
    parser.add_argument("--overwrite", action="store_true", help="replace the split if the output manifest already has it")


def add_from_folder_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "from-folder",
        help="write shards from a folder of images with sidecar captions (name.jpg + name.txt / name.json)",
        description="Write every JPEG/PNG/WebP image under a folder that has a sidecar caption (name.txt, or name.json "
        "with long_caption/caption and a short text) into {split}-NNNNNN.tar shards plus manifest.json. Image bytes "
        "are kept unchanged; images that do not decode or have no caption are skipped and counted per reason.",
    )
    parser.add_argument("folder", help="the image folder (read recursively, in sorted order; hidden files are ignored)")
    _add_output_arguments(parser)
    parser.set_defaults(run=run_from_folder)


def add_from_manifest_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "from-manifest",
        help="write shards from a reference-format CSV / JSON-lines manifest (image_path, h_div_w, long_caption, text)",
        description="Write the images a manifest lists (columns or keys image_path, h_div_w, long_caption and an "
        "optional short text; relative paths resolve against the manifest's folder) into {split}-NNNNNN.tar shards "
        "plus manifest.json, in manifest order. Unusable rows are skipped and counted per reason.",
    )
    parser.add_argument("manifest", help="a .csv, .jsonl or .json manifest")
    _add_output_arguments(parser)
    parser.set_defaults(run=run_from_manifest)


def add_validate_wds_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate-wds",
        help="validate existing WebDataset shards (e.g. img2dataset output) and write manifest.json beside them",
        description="Read every sample of existing shards ({key}.jpg with {key}.txt and/or a {key}.json caption) as the "
        "reader does, decode every image, count unusable samples per reason, and write manifest.json (per-shard "
        "sample counts and aspect ratios) beside the shards. The shards are not rewritten.",
    )
    parser.add_argument("--shards", required=True, help="a directory of .tar shards or a brace pattern of local files")
    parser.add_argument("--split", default="train", help="split name in manifest.json (default train)")
    parser.set_defaults(run=run_validate_wds)


def run_from_folder(args: argparse.Namespace) -> int:
    from data_pipelines.writers import WriteTally, folder_candidates

    tally = WriteTally()
    try:
        candidates = folder_candidates(args.folder, tally)
    except NotADirectoryError as error:
        raise UsageError(f"{PROG} from-folder: error: {error}") from None
    return _write("from-folder", args, candidates, tally, {"source": "folder", "input": str(args.folder)})


def run_from_manifest(args: argparse.Namespace) -> int:
    from data_pipelines.writers import WriteTally, manifest_candidates

    tally = WriteTally()
    try:
        candidates = manifest_candidates(args.manifest, tally)
    except (OSError, ValueError) as error:
        raise UsageError(f"{PROG} from-manifest: error: {error}") from None
    return _write("from-manifest", args, candidates, tally, {"source": "manifest", "input": str(args.manifest)})


def _write(command: str, args: argparse.Namespace, candidates: Any, tally: Any, metadata: dict[str, Any]) -> int:
    from data_pipelines.writers import write_candidates

    require_at_least(command, (("--samples-per-shard", args.samples_per_shard, 1),))
    progress = Progress(None, command)
    try:
        result = write_candidates(candidates, args.out, args.split, args.samples_per_shard, tally, metadata, args.overwrite, progress)
    except (FileExistsError, ValueError) as error:
        raise UsageError(f"{PROG} {command}: error: {error}") from None
    finally:
        progress.close()
    print(result.summary())
    print(json.dumps({"out": str(args.out), "split": args.split, "shards": len(result.shards), **tally.summary()}, sort_keys=True))
    if tally.written == 0:
        print(f"{PROG} {command}: error: no sample could be written ({tally.skip_line()})", file=sys.stderr)
        return 1
    return 0


def run_validate_wds(args: argparse.Namespace) -> int:
    from data_pipelines.writers import validate_webdataset

    progress = Progress(None, "validate-wds")
    try:
        result = validate_webdataset(args.shards, args.split, progress=progress)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"{PROG} validate-wds: error: {error}") from None
    finally:
        progress.close()
    summary = result.summary()
    skipped = ", ".join(f"{reason}={count}" for reason, count in summary["skipped"].items()) or "none"
    print(
        f"{args.split}: {summary['samples']} samples in {summary['shards']} shards, {summary['usable']} usable; "
        f"skipped {summary['skipped_total']} ({skipped}) -> {result.directory / 'manifest.json'}"
    )
    for note, count in summary["notes"].items():
        print(f"note: {note}={count}")
    print(json.dumps({"shards_dir": str(result.directory), "split": args.split, **summary}, sort_keys=True))
    if result.usable == 0:
        print(f"{PROG} validate-wds: error: no usable sample in {args.shards}", file=sys.stderr)
        return 1
    return 0
