"""Generation latency: seconds per image for text-to-image sampling, with and without the tokenizer decode.

One image (``--batch``) at ``--resolution`` with classifier-free guidance (a doubled batch) and the KV
cache, for a model option composed through the config (``--model 2b``). Random weights throughout:
the text path is fed random packed embeddings of the encoder's width (no text encoder is loaded) and
the decode uses a random tokenizer of the reference size (d=32, base 128). bf16 autocast on CUDA, fp32
on CPU; warmup runs, then the median of the timed repeats. Defaults: 2b at 1024^2 (13 scales) on CUDA,
debug2 at 256^2 on CPU. Examples:
    python benchmarks/generation_latency.py                                  # the device's default
    python benchmarks/generation_latency.py --model layer24 --resolution 512 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from pathlib import Path

import torch

from infinity_train import geometry
from infinity_train.build import build_tokenizer, build_transformer
from infinity_train.config import load_config, to_typed, validate
from infinity_train.config.text_encoders import resolve_text_encoder
from infinity_train.models.sampling import generate_bits
from infinity_train.text.packed import pack_embeddings

DEFAULTS = {"cuda": ("2b", 1024), "cpu": ("debug2", 256)}  # device type -> (model option, resolution)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model option (conf/model); default 2b on CUDA, debug2 on CPU")
    parser.add_argument("--resolution", type=int, default=None, help="square side in pixels; default 1024 on CUDA, 256 on CPU")
    parser.add_argument("--aspect", type=float, default=1.0, help="h/w aspect template")
    parser.add_argument("--batch", type=int, default=1, help="images per generation call")
    parser.add_argument("--cfg", type=float, default=3.0, help="guidance scale (!= 1: doubled batch)")
    parser.add_argument("--text-tokens", type=int, default=None, help="caption length; default data.caption_tokens")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--override", nargs="*", default=[], help="extra config overrides (key=value)")
    return parser.parse_args()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    default_model, default_resolution = DEFAULTS.get(device.type, DEFAULTS["cpu"])
    model_name, resolution = args.model or default_model, args.resolution or default_resolution
    cfg = validate(to_typed(load_config([f"model={model_name}", "tokenizer=d32", f"data.resolution={resolution}", *args.override])))
    schedule = geometry.scale_schedule(resolution, args.aspect)
    text_info = resolve_text_encoder(cfg.model.text_encoder)
    text_tokens = args.text_tokens or min(cfg.data.caption_tokens, text_info.max_length)

    torch.manual_seed(0)
    model = build_transformer(cfg, device).eval().requires_grad_(False)
    tokenizer = build_tokenizer(cfg).to(device).eval().requires_grad_(False)
    text = pack_embeddings([torch.randn(text_tokens, text_info.dim, device=device) for _ in range(args.batch)])
    precision = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    tokens_per_image = geometry.num_tokens(schedule)
    print(
        f"device={device} ({device_name(device)}) precision={'bf16 autocast' if device.type == 'cuda' else 'fp32'} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    print(
        f"model={model_name} params={sum(p.numel() for p in model.parameters()) / 1e6:.1f}M tokenizer=d32 base {cfg.tokenizer.base_channels} "
        f"({sum(p.numel() for p in tokenizer.parameters()) / 1e6:.1f}M) resolution={resolution} h/w={args.aspect:g} "
        f"pixels={geometry.pixel_size(resolution, args.aspect)} scales={len(schedule)} tokens/image={tokens_per_image} "
        f"batch={args.batch} cfg={args.cfg:g} text_tokens={text_tokens} warmup={args.warmup} repeats={args.repeats}"
    )

    generate_times, total_times = [], []
    for run in range(args.warmup + args.repeats):
        synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode(), precision:
            generated = generate_bits(model, text, schedule, cfg=args.cfg, tau=1.0, generator=run)
            synchronize(device)
            generated_at = time.perf_counter()
            tokenizer.decode(tokenizer.bits_to_latent(generated.bits, schedule))
            synchronize(device)
        done = time.perf_counter()
        if run >= args.warmup:
            generate_times.append(generated_at - start)
            total_times.append(done - start)

    generate_s = statistics.median(generate_times) / args.batch
    total_s = statistics.median(total_times) / args.batch
    print(f"{'':>24} {'s/image':>9} {'tokens/s':>10}")
    print(f"{'generate (bits)':>24} {generate_s:>9.4f} {tokens_per_image / generate_s:>10.0f}")
    print(f"{'generate + decode':>24} {total_s:>9.4f} {tokens_per_image / total_s:>10.0f}")


if __name__ == "__main__":
    main()
