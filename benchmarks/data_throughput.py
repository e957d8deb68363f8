"""Data reader throughput: decoded, resized, aspect-bucketed images/s per worker (one process).

Compares the streaming reader (data_pipelines.reader: shuffle buffer of raw bytes, JPEG draft-mode
decoding, reduce + Lanczos resize with the crop folded in) with a plain webdataset pipeline
(``WebDataset(...).decode("pil")`` then a full-size Lanczos resize and center crop) on the same
shards in the same run; both produce float tensors in [-1, 1] at the image's template size.
Without --shards it writes photo-like 1024x768 JPEG shards to a temporary directory. Example:
    python benchmarks/data_throughput.py --num-samples 256 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import write_example_shards
from data_pipelines.reader.sources import expand_shard_urls
from infinity_train.geometry import nearest_template, pixel_size


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=None, help="shard directory or brace pattern (default: generate JPEG shards)")
    parser.add_argument("--num-samples", type=int, default=256, help="samples to generate when --shards is not given")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shuffle-buffer", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per pipeline (best one counts)")
    return parser.parse_args()


def reader_pass(shards: str, args: argparse.Namespace) -> int:
    reader = build_reader(
        shards,
        resolution=args.resolution,
        batch_size_per_rank=args.batch_size,
        num_workers=0,
        shuffle_buffer=args.shuffle_buffer,
        resampled=False,
    )
    return sum(batch["images"].shape[0] for batch in reader)


def plain_pass(shards: str, args: argparse.Namespace) -> int:
    def resize_and_crop(sample: dict) -> torch.Tensor:
        image = sample["jpg"].convert("RGB")
        height, width = pixel_size(args.resolution, nearest_template(image.height / image.width))
        scale = max(width / image.width, height / image.height)
        resized = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)), Image.Resampling.LANCZOS)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        array = np.array(resized.crop((left, top, left + width, top + height)))
        return torch.from_numpy(array).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

    dataset = wds.WebDataset(expand_shard_urls(shards), shardshuffle=False, empty_check=False).decode("pil").map(resize_and_crop)
    return sum(1 for _ in dataset)


def best_rate(run: Callable[[], int], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # one data worker = one core
    with tempfile.TemporaryDirectory() as scratch:
        shards = args.shards
        if shards is None:
            started = time.perf_counter()
            write_example_shards(scratch, args.num_samples, 64, sizes=[(args.width, args.height)], image_format="jpg")
            shards = scratch
            print(f"wrote {args.num_samples} photo-like {args.width}x{args.height} JPEGs in {time.perf_counter() - started:.1f} s")
        reader_pass(shards, args), plain_pass(shards, args)  # warm the page cache and imports
        plain = best_rate(lambda: plain_pass(shards, args), args.repeats)
        ours = best_rate(lambda: reader_pass(shards, args), args.repeats)
    target = pixel_size(args.resolution, nearest_template(args.height / args.width))
    print(f"resolution {args.resolution} (a {args.width}x{args.height} image -> {target[1]}x{target[0]}), one worker, best of {args.repeats}")
    print(f"{'pipeline':<48} {'images/s':>9}")
    print(f"{'webdataset decode(pil) + Lanczos resize + crop':<48} {plain:>9.1f}")
    print(f"{'data_pipelines.reader (draft + reduce + bucket)':<48} {ours:>9.1f}")
    print(f"speed-up {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
