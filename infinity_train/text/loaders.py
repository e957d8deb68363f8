"""Load a Hugging Face encoder and its tokenizer from a local directory, offline."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    MT5EncoderModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5EncoderModel,
    UMT5EncoderModel,
)

# Encoder-only classes for the T5 family: AutoModel would build the full encoder-decoder.
T5_FAMILY_ENCODERS: dict[str, type[PreTrainedModel]] = {
    "t5": T5EncoderModel,
    "mt5": MT5EncoderModel,
    "umt5": UMT5EncoderModel,
}


def load_pretrained_encoder(
    directory: Path, *, kind: str, dtype: torch.dtype, name: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``kind`` 't5' requires a T5-family checkpoint (a full encoder-decoder one is fine: its decoder
    weights are skipped); 'auto' takes any encoder AutoModel builds, T5-family ones included."""
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        model_class = _encoder_class(config.model_type, config.is_encoder_decoder, kind=kind, name=name)
        model, loading_info = model_class.from_pretrained(
            directory, dtype=dtype, local_files_only=True, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except OSError as error:  # missing weight or tokenizer files surface as OSError in transformers
        raise FileNotFoundError(
            f"text encoder {name!r}: could not load model and tokenizer from {directory}: {error}. "
            "The directory needs config.json, the weights (*.safetensors or *.bin) and the tokenizer files."
        ) from error
    # transformers would silently initialize missing weights at random: a frozen encoder must not run
    # half-random. The pooler is exempt: last_hidden_state never uses it, and many checkpoints omit it.
    missing = sorted(key for key in loading_info["missing_keys"] if not key.startswith("pooler."))
    if missing:
        raise ValueError(
            f"text encoder {name!r}: checkpoint in {directory} lacks {len(missing)} weights of "
            f"{model_class.__name__} (e.g. {missing[:3]}); is it the right model?"
        )
    return model, tokenizer


def _encoder_class(model_type: str, is_encoder_decoder: bool, *, kind: str, name: str) -> type[PreTrainedModel]:
    if model_type in T5_FAMILY_ENCODERS:
        return T5_FAMILY_ENCODERS[model_type]
    if kind == "t5":
        raise ValueError(
            f"text encoder {name!r} expects a T5-family checkpoint ({', '.join(T5_FAMILY_ENCODERS)}), "
            f"got model_type={model_type!r}; use name='auto' for other encoders"
        )
    if is_encoder_decoder:
        raise ValueError(
            f"text encoder {name!r}: model_type={model_type!r} is an encoder-decoder without a known "
            "encoder-only class; only T5-family encoder-decoders are supported"
        )
    return AutoModel
