"""Resolve a config's text encoder to the facts sizing needs (hidden size, max tokens) from the
known-encoder registry, without loading any model or importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from infinity_train.config.schema import TextEncoderConfig
from infinity_train.text.registry import lookup_text_encoder


@dataclass(frozen=True)
class ResolvedTextEncoder:
    name: str
    kind: str
    path: str | None
    dim: int
    max_length: int


def resolve_text_encoder(cfg: TextEncoderConfig) -> ResolvedTextEncoder:
    """Fill dim / max_length from the registry; the generic kinds (t5, auto) need a path and a dim."""
    try:
        spec = lookup_text_encoder(cfg.name)
    except ValueError as error:
        raise ValueError(f"model.text_encoder.name: {error}") from None
    if spec.hidden_dim is None:
        if not cfg.path or not cfg.dim:
            raise ValueError(f"model.text_encoder.name={cfg.name} needs model.text_encoder.path and model.text_encoder.dim")
        return ResolvedTextEncoder(cfg.name, spec.kind, cfg.path, cfg.dim, cfg.max_length or 512)
    if spec.kind == "tiny-t5" and cfg.dim is not None:  # built in code at any width (a multiple of 4)
        if cfg.dim < 4 or cfg.dim % 4:
            raise ValueError(f"model.text_encoder.dim={cfg.dim}: tiny-t5 needs a positive multiple of 4")
        return ResolvedTextEncoder(cfg.name, spec.kind, None, cfg.dim, cfg.max_length or spec.max_length or 512)
    if cfg.dim is not None and cfg.dim != spec.hidden_dim:
        raise ValueError(f"model.text_encoder.dim={cfg.dim} contradicts {cfg.name}, whose hidden size is {spec.hidden_dim}")
    max_length = cfg.max_length or spec.max_length or 512
    if max_length < 1:
        raise ValueError(f"model.text_encoder.max_length must be >= 1, got {max_length}")
    return ResolvedTextEncoder(cfg.name, spec.kind, cfg.path or spec.default_source, spec.hidden_dim, max_length)
