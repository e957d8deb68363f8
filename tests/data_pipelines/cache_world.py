"""The small cached dataset the cache tests share (built once per session by the ``cache_world``
fixture in conftest.py): synthetic raw shards, a tiny random tokenizer saved as safetensors, the
tiny-t5 text encoder, and the cache the job writes from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from data_pipelines.cache import CacheModels, write_cache
from data_pipelines.synthetic import write_synthetic_dataset

RESOLUTION = 64
RAW_SAMPLES = 24
SAMPLES_PER_SHARD = 6  # 4 shards: enough for 2 ranks x 2 workers
ASPECTS = (1.0, 0.5)


@dataclass(frozen=True)
class CacheWorld:
    raw: Path
    cached: Path
    tokenizer_path: Path
    models: CacheModels


def tiny_tokenizer_file(path: Path) -> Path:
    from infinity_train.tokenizer import BitwiseTokenizer

    torch.manual_seed(0)
    tokenizer = BitwiseTokenizer(d=8, base_channels=8, channel_multipliers=(1, 1, 1, 1, 1), encoder_res_blocks=1, decoder_res_blocks=1)
    save_file(tokenizer.state_dict(), str(path))
    return path


def load_models(tokenizer_path: Path) -> CacheModels:
    from infinity_train.text import TextEncoder
    from infinity_train.tokenizer import load_tokenizer_checkpoint

    return CacheModels.identified(load_tokenizer_checkpoint(tokenizer_path), TextEncoder.from_config("tiny-t5"), tokenizer_path)


def build_cache_world(root: Path) -> CacheWorld:
    write_synthetic_dataset(root / "raw", RAW_SAMPLES, RESOLUTION, aspect_ratios=ASPECTS, samples_per_shard=SAMPLES_PER_SHARD, seed=0)
    tokenizer_path = tiny_tokenizer_file(root / "tokenizer.safetensors")
    models = load_models(tokenizer_path)
    # batch_size 1: a convolution's float results depend slightly on the batch size, and the
    # online-vs-cached parity test encodes one image at a time too.
    write_cache(root / "raw", root / "cached", models, resolution=RESOLUTION, batch_size=1)
    return CacheWorld(root / "raw", root / "cached", tokenizer_path, models)
