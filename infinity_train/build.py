"""Build the models of a run from its validated config: the transformer, the tokenizer and the frozen
text encoder. The parameter counts of ``build_transformer`` equal ``sizing.describe_config`` exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from infinity_train.config.schema import TokenizerKind, TrainConfig
from infinity_train.config.text_encoders import resolve_text_encoder
from infinity_train.models.infinity import InfinityTransformer
from infinity_train.sizing import shape_from_config
from infinity_train.tokenizer import BitwiseTokenizer, load_tokenizer_checkpoint
from infinity_train.tokenizer.pca_tokenizer import PcaTokenizer

log = logging.getLogger(__name__)


def build_transformer(cfg: TrainConfig, device: torch.device | str = "cpu") -> InfinityTransformer:
    shape = shape_from_config(cfg)
    with torch.device(device):
        return InfinityTransformer(
            width=shape.width,
            depth=shape.depth,
            heads=shape.heads,
            bits=shape.bits,
            text_dim=shape.text_dim,
            text_max_len=shape.text_max_len,
            mlp_ratio=cfg.model.mlp_ratio,
            drop_path=cfg.model.drop_path,
            cond_drop=cfg.model.cond_drop,
            max_scales=cfg.model.max_scales,
            attention=cfg.model.attention.value,
            text_pool_heads=cfg.model.text_pool_heads,
            input_resampling=cfg.model.input_resampling.value,
        )


def build_tokenizer(cfg: TrainConfig) -> BitwiseTokenizer | PcaTokenizer:
    """A fresh tokenizer of the config's kind: the learned CNN autoencoder (``tokenizer.kind=bsq``,
    initialized for training) or the linear PCA tokenizer (``kind=pca``, still to be fitted)."""
    if cfg.tokenizer.kind == TokenizerKind.pca:
        return PcaTokenizer(cfg.tokenizer.d)
    if cfg.tokenizer.kind == TokenizerKind.bsq:
        return BitwiseTokenizer.from_config(cfg.tokenizer)
    raise ValueError(f"unknown tokenizer.kind {cfg.tokenizer.kind!r}; choose one of {', '.join(k.value for k in TokenizerKind)}")


def load_trained_tokenizer(cfg: TrainConfig, device: torch.device | str = "cpu") -> BitwiseTokenizer | PcaTokenizer:
    """The frozen tokenizer a transformer run trains on: ``tokenizer.checkpoint`` (a tokenizer run's
    export, a reference ``infinity_vae_*`` file, or a run directory whose export holds one)."""
    if not cfg.tokenizer.checkpoint:
        raise FileNotFoundError(
            "task=transformer needs a trained tokenizer: set tokenizer.checkpoint=<file or tokenizer run directory> "
            "(train one with `infinity-train train experiment=tokenizer_cpu`)"
        )
    path = Path(cfg.tokenizer.checkpoint)
    if path.is_dir():
        path = path / "export" / "tokenizer.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer.checkpoint: {path} does not exist")
    tokenizer = load_tokenizer_checkpoint(path)
    if tokenizer.d != cfg.tokenizer.d:
        raise ValueError(f"tokenizer.checkpoint {path} has d={tokenizer.d} but the config says tokenizer.d={cfg.tokenizer.d}")
    kind = getattr(tokenizer, "kind", TokenizerKind.bsq.value)
    if kind != cfg.tokenizer.kind.value:
        raise ValueError(f"tokenizer.checkpoint {path} is a {kind} tokenizer but the config says tokenizer.kind={cfg.tokenizer.kind.value}")
    log.info("%s tokenizer d=%d loaded from %s", kind, tokenizer.d, path)
    return tokenizer.to(device).eval().requires_grad_(False)


def build_text_encoder(cfg: TrainConfig, device: torch.device | str = "cpu"):
    from infinity_train.text import TextEncoder

    text = resolve_text_encoder(cfg.model.text_encoder)
    return TextEncoder.from_config(
        text.name, path=cfg.model.text_encoder.path, max_length=text.max_length, dtype=cfg.model.text_encoder.dtype, device=device,
        seed=cfg.seed, dim=text.dim,
    )
