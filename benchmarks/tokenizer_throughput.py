"""Tokenizer throughput: images/s for encode (image -> per-scale bits) and decode (bits -> image).

Random weights and images at the reference sizes (base 128, multipliers 1,2,4,4,4); CUDA with
bf16 autocast when available, else CPU fp32. Example:
    python benchmarks/tokenizer_throughput.py --batch-size 8 --iters 20
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable

import torch

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--resolution", type=int, default=256, help="square image side in pixels")
    parser.add_argument("--base-channels", type=int, default=128)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32], help="latent dims d to measure")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    return parser.parse_args()


def images_per_second(step: Callable[[], object], batch: int, iters: int, warmup: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_bf16 = device.type == "cuda"
    precision = contextlib.nullcontext if not use_bf16 else lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    print(
        f"device={device} precision={'bf16 autocast' if use_bf16 else 'fp32'} threads={torch.get_num_threads()} "
        f"resolution={args.resolution} batch={args.batch_size} iters={args.iters} warmup={args.warmup}"
    )
    print(f"{'d':>3} {'params (M)':>10} {'encode img/s':>13} {'decode img/s':>13}")
    for d in args.dims:
        torch.manual_seed(0)
        tokenizer = BitwiseTokenizer(d, base_channels=args.base_channels).to(device).eval()
        params = sum(p.numel() for p in tokenizer.parameters()) / 1e6
        images = torch.rand(args.batch_size, 3, args.resolution, args.resolution, device=device) * 2 - 1
        schedule = tokenizer.token_schedule_for(images)
        with torch.inference_mode(), precision():
            bits = tokenizer.image_to_bits(images, schedule)
            encode = images_per_second(lambda: tokenizer.image_to_bits(images, schedule), args.batch_size, args.iters, args.warmup, device)
            decode = images_per_second(lambda: tokenizer.bits_to_image(bits, schedule), args.batch_size, args.iters, args.warmup, device)
        print(f"{d:>3} {params:>10.1f} {encode:>13.2f} {decode:>13.2f}")
        del tokenizer, images, bits
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
