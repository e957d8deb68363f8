"""Release checkpoint conversion: seconds to read, convert and load an Infinity release file on the CPU.

Writes a random state dict of a model option's shape in the release's layout (bf16, as
``infinity_2b_reg.pth`` is published; ``--dtype float32`` for an fp32 copy) to ``--dir``, then times
reading it (``torch.load(weights_only=True, mmap=True)``), converting it to this project's layout,
loading it into an fp32 ``InfinityTransformer`` and exporting it back to the release layout, and
checks the round trip is lossless. Needs 2 bytes of disk per parameter (bf16) and about 6 of memory.
    python benchmarks/release_checkpoint.py --model 2b          # 2.2B parameters: a 4.4 GB file, ~13 GB RAM
    python benchmarks/release_checkpoint.py --model debug4      # seconds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from infinity_train.config import load_config, to_typed, validate
from infinity_train.models.infinity import InfinityTransformer
from infinity_train.models.reference import convert_for, export_reference, read_transformer_weights
from infinity_train.sizing import shape_from_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="2b", help="model option (conf/model)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer option (default: d32 for released sizes)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="dtype of the written file")
    parser.add_argument("--block-chunks", type=int, default=8, help="the release's block_chunks (2b, 8b: 8)")
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temporary directory)")
    return parser.parse_args()


def empty_model(cfg) -> InfinityTransformer:
    """The model's parameters allocated but not initialized (the benchmark loads every one of them)."""
    shape = shape_from_config(cfg)
    with torch.device("meta"):
        model = InfinityTransformer(
            shape.width, shape.depth, shape.heads, shape.bits, shape.text_dim, shape.text_max_len,
            mlp_ratio=cfg.model.mlp_ratio, text_pool_heads=cfg.model.text_pool_heads,
        )
    return model.to_empty(device="cpu")


def main() -> None:
    args = parse_args()
    overrides = [f"model={args.model}"] + ([f"tokenizer={args.tokenizer}"] if args.tokenizer else [])
    cfg = validate(to_typed(load_config(overrides)))
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    source = empty_model(cfg)
    with torch.no_grad():
        for param in source.parameters():
            param.normal_()
    release = {k: v.to(dtype) for k, v in export_reference(source, args.block_chunks).items()}
    params = sum(v.numel() for k, v in release.items() if not k.endswith("zero_k_bias"))
    del source
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / f"infinity_{args.model}.pth"
        started = time.perf_counter()
        torch.save(release, path)
        written = time.perf_counter() - started
        size_gb = path.stat().st_size / 1e9
        release_keys = set(release)
        del release  # the comparison below reads the file back instead: one copy of the weights in memory

        started = time.perf_counter()
        state = read_transformer_weights(path)
        read = time.perf_counter() - started
        model = empty_model(cfg)
        started = time.perf_counter()
        converted = convert_for(model, state, str(path))
        convert = time.perf_counter() - started
        started = time.perf_counter()
        model.load_state_dict(converted, strict=True)
        load = time.perf_counter() - started
        started = time.perf_counter()
        back = export_reference(model, args.block_chunks)
        export = time.perf_counter() - started
        lossless = set(back) == release_keys and all(torch.equal(back[k].to(dtype), state[k]) for k in release_keys)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "cpu")
    print(
        f"model={args.model} params={params / 1e9:.4f}B file={size_gb:.2f} GB ({args.dtype}, block_chunks={args.block_chunks}) "
        f"threads={torch.get_num_threads()} cpu={cpu}\n"
        f"write {written:.2f} s | read {read:.2f} s | convert {convert:.3f} s | load into fp32 model {load:.2f} s | "
        f"read+convert+load {read + convert + load:.2f} s | export to release layout {export:.3f} s | round trip lossless: {lossless}"
    )


if __name__ == "__main__":
    main()
