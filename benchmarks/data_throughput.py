"""Data reader throughput against the pipeline a user would write, on shards of real photographs.

Writes shards of JPEG crops of varied sizes, re-encoded from a folder of photographs (--photos DIR;
without it, photo-like synthetic images of the same size distribution, which are NOT photographs),
then times, with the same worker count and alternating passes, the reader (data_pipelines.reader)
and three idiomatic webdataset baselines, each resizing to 256 (short side, Pillow's default
filter), center-cropping and making tensors:

    wds.WebDataset(urls).shuffle(1000).decode("pil").to_tuple("jpg", "txt")      + DataLoader(batch_size)
    wds.WebDataset(urls).shuffle(1000).decode("pilrgb").to_tuple("jpg", "txt")   + DataLoader(batch_size)
    wds.WebDataset(urls).shuffle(1000).decode("pil").to_tuple(...).batched(B)    + wds.WebLoader(batch_size=None)

The fastest baseline counts. It prints the median images/s over --passes passes per pipeline and
worker count, the ratio of the reader to every baseline, the pixel check (the reader's batches
against a reference full decode -> Lanczos resize -> center crop, within the JPEG draft-mode
tolerance of data_pipelines.reader.images) and the data-wait fraction the trainer would log
(``time/data_wait_fraction``) at a layer12-sized step time. Example (the README's figures):

    python benchmarks/data_throughput.py --photos DIR_OF_PHOTOS --num-samples 1200 --out /tmp/bench-shards
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import example_captions, photo_like_image
from data_pipelines.reader.images import PIXEL_TOLERANCE, decode_to_size, pixel_difference, reference_decode
from data_pipelines.reader.sources import expand_shard_urls
from data_pipelines.shards import ShardWriter, expand_shards, iter_samples, split_entry, write_split_entry

# README, "Benchmarks": a layer12 (d=32 tokenizer) training step at 256^2 runs at 0.48 images/s on
# the project's 2-core CPU, i.e. 2.08 s per image.
LAYER12_CPU_SECONDS_PER_IMAGE = 1 / 0.48
H100_BF16_DENSE_TFLOPS = 989.4  # NVIDIA's H100 SXM datasheet figure, without sparsity


def layer12_gpu_seconds_per_image(resolution: int, mfu: float) -> float:
    """A layer12 (d=32) training step per image on one H100 at ``mfu``: the analytic training FLOPs per
    image (infinity_train.sizing, 3 x forward) over the achieved FLOP rate. An estimate, not a measurement."""
    from infinity_train import geometry, sizing
    from infinity_train.config import load_config, to_typed

    cfg = to_typed(load_config(["model=layer12", "tokenizer.d=32", f"data.resolution={resolution}"]))
    shape = sizing.shape_from_config(cfg)
    forward = sizing.forward_flops_per_image(shape, geometry.scale_schedule(resolution), cfg.data.caption_tokens)
    return 3 * forward["forward_total"] / (H100_BF16_DENSE_TFLOPS * 1e12 * mfu)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=None, help="folder of JPEG photographs to crop from (default: synthetic)")
    parser.add_argument("--shards", default=None, help="read these shards (jpg, txt and json members) instead of writing new ones")
    parser.add_argument("--out", default=None, help="write the shards here and keep them (default: a temporary directory)")
    parser.add_argument("--num-samples", type=int, default=3000)
    parser.add_argument("--samples-per-shard", type=int, default=100)
    parser.add_argument("--min-side", type=int, default=256, help="short side of the crops: uniform in [min, max]")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to compare")
    parser.add_argument("--passes", type=int, default=5, help="timed passes per pipeline and worker count (median counts)")
    parser.add_argument("--pixel-check", type=int, default=256, help="reader images compared with the reference decode")
    parser.add_argument(
        "--step-time",
        type=float,
        default=None,
        help="seconds per training step for the data-wait fraction (default: two steps are shown, the README's "
        f"layer12 CPU step, {LAYER12_CPU_SECONDS_PER_IMAGE:.2f} s per image, and a layer12 step on one H100 at --mfu)",
    )
    parser.add_argument("--mfu", type=float, default=0.45, help="model FLOP utilisation assumed for the H100 step estimate (the project's target)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ---------------------------------------------------------------------------- shards


def crop_sizes(rng: np.random.Generator, count: int, min_side: int, max_side: int) -> list[tuple[int, int]]:
    """(width, height): short side uniform in [min_side, max_side], h/w log-uniform in [1/2, 2]."""
    sizes = []
    for _ in range(count):
        short = int(rng.integers(min_side, max_side + 1))
        ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        sizes.append((short, round(short * ratio)) if ratio >= 1 else (round(short / ratio), short))
    return sizes


def photo_crops(folder: str, sizes: list[tuple[int, int]], rng: np.random.Generator) -> Iterator[Image.Image]:
    """Crops of the photos (photo i % n for crop i), each a random region of the crop's aspect ratio,
    between native pixels and the largest that fits (log-uniform), Lanczos-resized to its size."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no .jpg/.jpeg files in {folder}")
    for index, path in enumerate(paths):
        mine = sizes[index :: len(paths)]
        if not mine:
            break
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        for width, height in mine:
            largest = min(photo.width / width, photo.height / height)
            zoom = largest ** rng.uniform(0, 1) if largest > 1 else largest
            box_w, box_h = width * zoom, height * zoom
            left, top = rng.uniform(0, photo.width - box_w), rng.uniform(0, photo.height - box_h)
            yield photo.resize((width, height), Image.Resampling.LANCZOS, box=(left, top, left + box_w, top + box_h), reducing_gap=2.0)


def write_shards(directory: str, args: argparse.Namespace) -> list[dict]:
    """Shards of JPEG crops with .txt and .json captions; returns each sample's (width, height, bytes)."""
    rng = np.random.default_rng(args.seed)
    sizes = crop_sizes(rng, args.num_samples, args.min_side, args.max_side)
    if args.photos:
        images = photo_crops(args.photos, sizes, rng)
    else:
        images = (photo_like_image(rng, width, height) for width, height in sizes)
    stats = []
    with ShardWriter(directory, "bench", args.samples_per_shard) as writer:
        for index, image in enumerate(images):
            long_caption, short_caption = example_captions(index, rng)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
            data = buffer.getvalue()
            meta = {"long_caption": long_caption, "text": short_caption, "width": image.width, "height": image.height}
            files = {"jpg": data, "txt": long_caption.encode(), "json": json.dumps(meta).encode()}
            writer.write(f"bench-{index:06d}", files, h_div_w=image.height / image.width)
            stats.append({"width": image.width, "height": image.height, "bytes": len(data)})
    write_split_entry(directory, "bench", split_entry("bench", writer.shards, complete=True))
    return stats


SOURCES_FILE = "sources.json"  # beside the shards: their size distribution, for a later --shards run


def describe_sources(stats: list[dict], origin: str) -> str:
    def quantiles(values: list[float]) -> str:
        q = np.percentile(values, [0, 10, 50, 90, 100])
        return " / ".join(f"{v:,.0f}" if v >= 10 else f"{v:.2f}" for v in q)

    short = [min(s["width"], s["height"]) for s in stats]
    long = [max(s["width"], s["height"]) for s in stats]
    megapixels = [s["width"] * s["height"] / 1e6 for s in stats]
    kilobytes = [s["bytes"] / 1e3 for s in stats]
    return "\n".join([
        f"sources: {len(stats)} JPEGs, {origin}",
        "  min / p10 / median / p90 / max:",
        f"  short side px  {quantiles(short)}",
        f"  long side px   {quantiles(long)}",
        f"  megapixels     {quantiles(megapixels)}",
        f"  file kB        {quantiles(kilobytes)}",
    ])


# ---------------------------------------------------------------------------- pipelines


def to_256_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """What a user writes: short side to ``size`` (Pillow's default filter), center crop, to tensor."""
    scale = size / min(image.width, image.height)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))))
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)


def baseline_loader(kind: str, urls: list[str], args: argparse.Namespace, workers: int):
    size = args.resolution

    def transform(image: Image.Image) -> torch.Tensor:
        return to_256_tensor(image, size)

    decoder = "pilrgb" if kind == "decode(pilrgb)" else "pil"
    dataset = wds.WebDataset(urls).shuffle(args.shuffle_buffer).decode(decoder).to_tuple("jpg", "txt").map_tuple(transform, lambda t: t)
    if kind == "WebLoader(batched)":
        return wds.WebLoader(dataset.batched(args.batch_size), batch_size=None, num_workers=workers)
    return DataLoader(dataset, batch_size=args.batch_size, num_workers=workers)


def baseline_pass(kind: str, urls: list[str], args: argparse.Namespace, workers: int) -> int:
    return sum(len(images) for images, _ in baseline_loader(kind, urls, args, workers))


def reader_pass(shards: str, args: argparse.Namespace, workers: int, seed: int) -> int:
    reader = build_reader(
        shards, resolution=args.resolution, batch_size_per_rank=args.batch_size, num_workers=workers,
        shuffle_buffer=args.shuffle_buffer, seed=seed, rank=0, world_size=1,
    )
    return sum(batch["images"].shape[0] for batch in reader)


def timed(run: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - started)


# ---------------------------------------------------------------------------- checks


def pixel_check(shards: str, args: argparse.Namespace) -> dict[str, float]:
    """The reader's batches (0 workers) against reference_decode of the same encoded images, and
    how many are bit-identical to Pillow's own draft-mode decode."""
    encoded = {s["__key__"]: s["jpg"] for s in iter_samples(expand_shards(shards))}
    reader = build_reader(shards, resolution=args.resolution, batch_size_per_rank=args.batch_size, num_workers=0, rank=0, world_size=1)
    worst_mean, worst_max, total, pixels, images, identical = 0.0, 0, 0.0, 0, 0, 0
    for batch in reader:
        for key, image in zip(batch["keys"], batch["images"]):
            got = image.permute(1, 2, 0).numpy()
            diff = pixel_difference(got, reference_decode(encoded[key], got.shape[:2]))
            identical += int(np.array_equal(got, decode_to_size(encoded[key], got.shape[:2], simd_jpeg=False)))
            worst_mean, worst_max = max(worst_mean, diff["mean"]), max(worst_max, diff["max"])
            total, pixels, images = total + diff["mean"] * got.size, pixels + got.size, images + 1
        if images >= args.pixel_check:
            break
    return {"images": images, "mean": total / pixels, "worst_mean": worst_mean, "max": worst_max, "identical": identical}


def wait_fraction(images_per_s: float, workers: int, batch: int, step_time: float) -> float:
    """time/data_wait_fraction of the trainer (time in next(reader) / step wall time) in steady state:
    with no workers the batch is made inside the step; with workers it is made during the step, on
    other cores, and only what is left over is waited for."""
    make = batch / images_per_s
    wait = make if workers == 0 else max(0.0, make - step_time)
    return wait / (step_time + wait)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # one process = one core, for the baselines and the reader alike
    warnings.filterwarnings("ignore", module="webdataset")
    workers_list = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        shards = args.shards
        if shards is None:
            started = time.perf_counter()
            if args.photos:
                count = sum(1 for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
                origin = f"crops of the {count} photographs in {args.photos}"
            else:
                origin = "SYNTHETIC photo-like images, not photographs (pass --photos DIR)"
            shards = args.out or scratch
            Path(shards).mkdir(parents=True, exist_ok=True)
            stats = write_shards(shards, args)
            origin += f"; quality 75..95, short side uniform in [{args.min_side}, {args.max_side}], h/w log-uniform in [1/2, 2]"
            (Path(shards) / SOURCES_FILE).write_text(json.dumps({"origin": origin, "samples": stats}))
            print(f"wrote {len(stats)} samples to {shards} in {time.perf_counter() - started:.0f} s")
        saved = Path(shards) / SOURCES_FILE
        if saved.is_file():
            sources = json.loads(saved.read_text())
            print(describe_sources(sources["samples"], sources["origin"]))
        else:
            print(f"sources: the shards {shards} (size distribution unknown: no {SOURCES_FILE} beside them)")
        urls = expand_shard_urls(shards)
        check = pixel_check(shards, args)
        passed = check["mean"] <= PIXEL_TOLERANCE["mean"] and check["worst_mean"] <= PIXEL_TOLERANCE["image_mean"]
        print(
            f"pixel check, {check['images']} reader images vs the reference (Pillow full decode -> Lanczos -> center crop), "
            f"levels of 255: mean |diff| {check['mean']:.2f} (tolerance {PIXEL_TOLERANCE['mean']}), worst image mean "
            f"{check['worst_mean']:.2f} (tolerance {PIXEL_TOLERANCE['image_mean']}), max {check['max']}: "
            f"{'PASS' if passed else 'FAIL'}; bit-identical to Pillow's draft-mode decode: {check['identical']} of {check['images']}"
        )
        kinds = ["decode(pil)", "decode(pilrgb)", "WebLoader(batched)"]
        pipelines: dict[str, Callable[[int, int], int]] = {kind: (lambda w, p, k=kind: baseline_pass(k, urls, args, w)) for kind in kinds}
        pipelines["reader"] = lambda w, p: reader_pass(shards, args, w, seed=p)
        results: dict[int, dict[str, list[float]]] = {}
        loads: dict[int, list[str]] = {}
        for run in pipelines.values():  # warm the page cache and the imports, once
            run(workers_list[0], -1)
        for workers in workers_list:
            rates: dict[str, list[float]] = {name: [] for name in pipelines}
            loads[workers] = [load_average()]
            for index in range(args.passes):
                order = list(pipelines) if index % 2 == 0 else list(reversed(pipelines))
                for name in order:
                    rates[name].append(timed(lambda: pipelines[name](workers, index)))
                print(f"  {workers} workers, pass {index + 1}/{args.passes}: " + ", ".join(f"{n} {rates[n][-1]:.0f}" for n in pipelines), flush=True)
            loads[workers].append(load_average())
            results[workers] = rates
    if args.step_time is not None:
        step_times = {"given": args.step_time}
    else:
        step_times = {
            "layer12 on this CPU": LAYER12_CPU_SECONDS_PER_IMAGE * args.batch_size,
            f"layer12 on one H100 at {args.mfu:.0%} MFU (estimate)": layer12_gpu_seconds_per_image(args.resolution, args.mfu) * args.batch_size,
        }
    print(
        f"\nimages/s at {args.resolution}^2, batch {args.batch_size}, median of {args.passes} alternating passes (min..max); "
        "ratio of the medians (and median of the per-pass ratios); load average (1, 5, 15 min) before -> after"
    )
    for workers, rates in results.items():
        medians = {name: statistics.median(values) for name, values in rates.items()}
        best = max((n for n in medians if n != "reader"), key=medians.get)
        print(f"{workers} workers (load {loads[workers][0]} -> {loads[workers][1]}):")
        for name, values in rates.items():
            paired = statistics.median(r / b for r, b in zip(rates["reader"], values))  # pass i against pass i
            ratio = "" if name == "reader" else f"   reader / this = {medians['reader'] / medians[name]:.2f}x (per pass: {paired:.2f}x)"
            print(f"  {name:<20} {medians[name]:>7.1f}  ({min(values):.0f}..{max(values):.0f}){ratio}")
        print(f"  reader / best baseline ({best}) = {medians['reader'] / medians[best]:.2f}x")
        for label, step_time in step_times.items():
            fraction = wait_fraction(medians["reader"], workers, args.batch_size, step_time)
            print(
                f"  data-wait fraction, {label}, {step_time:.3f} s per step of {args.batch_size}: reader {fraction:.3f}, "
                f"best baseline {wait_fraction(medians[best], workers, args.batch_size, step_time):.3f}"
            )
        print(
            f"  the reader keeps up with steps down to {args.batch_size / medians['reader']:.3f} s"
            + (" (with workers)" if workers else " (then waits that long on every step)")
        )
    if args.step_time is None:
        print(
            f"step times: layer12 (d=32) at 256^2 on this project's 2-core CPU, 0.48 images/s (README, Benchmarks); "
            f"on an H100: training FLOPs per image from infinity_train.sizing at {args.mfu:.0%} of {H100_BF16_DENSE_TFLOPS:g} TFLOP/s"
        )


if __name__ == "__main__":
    main()
