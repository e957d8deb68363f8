"""Training-step throughput of the transformer: images/s, tokens/s, TFLOP/s and MFU per device, peak memory.

Runs N optimizer steps of a config (Hydra overrides, as for training) through the same parallel unit
the trainer uses (checkpointing, compile, sharding), on random teacher-forcing inputs and caption
embeddings, so any model size can be measured without data or a trained tokenizer. FLOPs are the
analytic count (attention over the block-causal mask included); MFU is against the bf16 dense peak.
Examples:
    python benchmarks/train_throughput.py model=debug2 data.resolution=64 data.global_batch_size=16
    torchrun --nproc-per-node 8 benchmarks/train_throughput.py model=layer12 data.resolution=256 \\
        data.global_batch_size=256 parallel=fsdp parallel.compile=true model.attention=flex
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from infinity_train import geometry
from infinity_train.build import build_transformer
from infinity_train.config import load_config, to_typed, validate
from infinity_train.distributed import all_reduce_sum, destroy_process_group, detect_world, init_process_group, select_device
from infinity_train.models.loss import bitwise_loss
from infinity_train.parallel.units import build_unit
from infinity_train.sizing import forward_flops_per_image, shape_from_config
from infinity_train.throughput import peak_memory_gb, peak_tflops
from infinity_train.train.trainer import use_bf16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile, allocator)")
    parser.add_argument("--text-tokens", type=int, default=None, help="caption tokens per image (default: data.caption_tokens)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run config")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    world = detect_world()
    cfg = validate(to_typed(load_config([*args.overrides, f"world_size={world.world_size}"])))
    device = select_device(cfg.device, world)
    init_process_group(world, device)
    bf16 = use_bf16(cfg.parallel.precision, device)
    shape = shape_from_config(cfg)
    schedule = geometry.scale_schedule(cfg.data.resolution, 1.0)
    tokens = geometry.num_tokens(schedule)
    text_tokens = args.text_tokens or min(cfg.data.caption_tokens, shape.text_max_len)
    micro = cfg.data.global_batch_size // (world.world_size * cfg.optim.grad_accum_steps)

    torch.manual_seed(cfg.seed)
    model = build_transformer(cfg)
    unit = build_unit("model", model, cfg.optim, cfg.parallel, world, device, micro, 1e-4, bf16)
    generator = torch.Generator(device="cpu").manual_seed(world.rank)
    inputs = (torch.randn(micro, tokens - 1, shape.bits, generator=generator) / shape.bits**0.5).to(device)
    labels = (torch.rand(micro, tokens, shape.bits, generator=generator) > 0.5).to(device)
    text = (
        torch.randn(micro * text_tokens, shape.text_dim, generator=generator).to(device),
        torch.arange(0, micro * text_tokens + 1, text_tokens, dtype=torch.int32, device=device),
        text_tokens,
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        for index in range(cfg.optim.grad_accum_steps):
            with unit.sync(index == cfg.optim.grad_accum_steps - 1), autocast:
                loss = bitwise_loss(unit.module(inputs, text, schedule), labels, schedule).loss
                unit.backward(loss)
        unit.step(1e-4)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = torch.tensor([time.perf_counter() - started], device=device)
    elapsed = float(all_reduce_sum(elapsed)) / world.world_size

    images_per_device = args.steps * cfg.data.global_batch_size / world.world_size
    flops_per_image = 3 * forward_flops_per_image(shape, schedule, text_tokens)["forward_total"]
    tflops = images_per_device * flops_per_image / elapsed / 1e12
    peak = peak_tflops(device)
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world.world_size,
        "model": cfg.model.name,
        "depth": shape.depth,
        "width": shape.width,
        "bits": shape.bits,
        "resolution": cfg.data.resolution,
        "tokens_per_image": tokens,
        "global_batch": cfg.data.global_batch_size,
        "strategy": cfg.parallel.strategy.value,
        "activation_checkpointing": cfg.parallel.activation_checkpointing.value,
        "compile": cfg.parallel.compile,
        "precision": "bf16" if bf16 else "fp32",
        "step_s": elapsed / args.steps,
        "images_per_s_per_device": images_per_device / elapsed,
        "tokens_per_s_per_device": images_per_device * tokens / elapsed,
        "tflops_per_s_per_device": tflops,
        "mfu": tflops / peak if peak else None,
        "peak_memory_gb": peak_memory_gb(device),
    }
    if world.is_main:
        print(json.dumps(figures, indent=2))
    destroy_process_group()


if __name__ == "__main__":
    main()
