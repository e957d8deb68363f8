"""Transformer weights files, whoever wrote them: a run's ``export/model.safetensors`` or an Infinity release
checkpoint (``infinity_2b_reg.pth``, the 8B model's sharded directory, or either converted to safetensors).

``read_weights`` tells the two layouts apart and reads them without unpickling anything; ``load_weights``
checks a file against a built model (one line naming what differs) and loads it; ``release_config`` builds
the config of a release file that comes without one (sampling, ``describe``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from infinity_train.config import ConfigError, TrainConfig, load_config, to_typed, validate
from infinity_train.models.infinity import MODEL_FORMAT, InfinityTransformer
from infinity_train.models.reference import (
    ReferenceArchitecture,
    ReferenceCheckpointError,
    config_overrides,
    convert_for,
    is_reference_layout,
    read_transformer_weights,
    reference_architecture,
    safetensors_metadata,
)

_SHOWN = 5


class WeightsError(ValueError):
    """A weights file that cannot be used, phrased as one line for the user."""


@dataclass
class TransformerWeights:
    source: Path
    state: dict[str, torch.Tensor]
    release_layout: bool
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def architecture(self) -> ReferenceArchitecture:
        return reference_architecture(self.state, str(self.source))


def read_weights(path: str | Path) -> TransformerWeights:
    path = Path(path)
    try:
        state = read_transformer_weights(path)
        metadata = safetensors_metadata(path)
    except ReferenceCheckpointError as error:
        raise WeightsError(str(error)) from error
    return TransformerWeights(path, state, is_reference_layout(state), metadata)


def is_weights_file(path: str | Path) -> bool:
    """A file (or sharded directory) of transformer weights rather than a training checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"))
    return path.suffix in (".pth", ".pt", ".bin", ".safetensors")


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN else shown


def check_export(model: InfinityTransformer, weights: TransformerWeights) -> None:
    """An export in this project's layout must be of the current model format and fit ``model`` exactly."""
    source, state = weights.source, weights.state
    found_format = weights.metadata.get("model_format")
    if found_format != str(MODEL_FORMAT):
        raise WeightsError(
            f"{source} holds a transformer of format {found_format or 1}, written before the model matched the Infinity "
            f"release (format {MODEL_FORMAT}: RoPE positions, text-pool heads, unconditional text length, next-scale "
            "input resampling); its weights would compute another function: retrain, or convert a release checkpoint"
        )
    for key, wanted in (("text_pool_heads", model.text_pool_heads), ("input_resampling", model.input_resampling)):
        if key in weights.metadata and weights.metadata[key] != str(wanted):
            raise WeightsError(f"{source} was trained with {key}={weights.metadata[key]} but the config gives {wanted}")
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        parts = [f"missing keys: {_listing(missing)}"] if missing else []
        parts += [f"unexpected keys: {_listing(unexpected)}"] if unexpected else []
        raise WeightsError(f"checkpoint {source} does not match the model: " + "; ".join(parts))
    found_bits = state["word_embed.weight"].shape[-1]
    if found_bits != model.bits:
        raise WeightsError(f"checkpoint {source} predicts {found_bits} bits per token but the config's model predicts {model.bits}")
    mismatched = [f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}" for key in own if state[key].shape != own[key].shape]
    if mismatched:
        raise WeightsError(f"checkpoint {source} shapes (found vs model) differ: {_listing(mismatched)}")


def load_weights(model: InfinityTransformer, weights: TransformerWeights) -> None:
    """Load either layout into ``model`` strictly (tensors are cast to the model's dtype)."""
    if weights.release_layout:
        try:
            state = convert_for(model, weights.state, str(weights.source))
        except ReferenceCheckpointError as error:
            raise WeightsError(str(error)) from error
    else:
        check_export(model, weights)
        state = weights.state
    model.load_state_dict(state, strict=True)


def release_config(weights: TransformerWeights, tokenizer: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config that builds a release-layout file's transformer: the release's model option (or the depth
    family with the file's shape), the bits of ``tokenizer`` (whose d and patchify it reads), then
    ``overrides``. A transformer file does not name its text encoder: the release's sizes use Flan-T5-XL,
    others need ``model.text_encoder.*`` among the overrides."""
    from infinity_train.tokenizer import load_tokenizer_checkpoint

    arch = weights.architecture
    path = Path(tokenizer)
    tokenizer_file = path / "export" / "tokenizer.safetensors" if path.is_dir() else path
    try:
        loaded = load_tokenizer_checkpoint(tokenizer_file)
    except (FileNotFoundError, ValueError) as error:
        raise WeightsError(f"--tokenizer {tokenizer}: {' '.join(str(error).split())}") from error
    if loaded.token_dim != arch.bits:
        raise WeightsError(f"{weights.source} predicts {arch.bits} bits per token but tokenizer {tokenizer} gives {loaded.token_dim}")
    base = config_overrides(arch)
    base += [f"tokenizer.d={loaded.d}", f"tokenizer.patchify={str(loaded.patchify).lower()}"]
    raw = load_config([*base, *overrides])
    raw.tokenizer.checkpoint = str(tokenizer)  # set after composition: a path needs no override quoting
    cfg = validate(to_typed(raw))
    text_dim = _text_dim(cfg)
    if text_dim != arch.text_dim:
        raise ConfigError(
            f"{weights.source} has a {arch.text_dim}-dim text path but model.text_encoder ({cfg.model.text_encoder.name}) is "
            f"{text_dim}-dim: name the encoder it was trained with (--set model.text_encoder.name=... model.text_encoder.path=...)"
        )
    return cfg


def _text_dim(cfg: TrainConfig) -> int:
    from infinity_train.config.text_encoders import resolve_text_encoder

    return resolve_text_encoder(cfg.model.text_encoder).dim
