"""The frozen text encoder: captions in, packed variable-length token embeddings out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from infinity_train.text.loaders import load_pretrained_encoder
from infinity_train.text.packed import PackedText
from infinity_train.text.precision import resolve_dtype
from infinity_train.text.registry import DEFAULT_MAX_LENGTH, TextEncoderSpec, lookup_text_encoder
from infinity_train.text.tiny_t5 import build_tiny_t5
from infinity_train.text.weights import minilm_package_dir, resolve_weights_dir


class TextEncoder:
    """A frozen Hugging Face encoder (eval mode, no parameter requires grad, forward under no_grad).

    Deliberately not an ``nn.Module``: it cannot be registered inside the trained model by accident,
    so its weights never reach the optimizer, FSDP wrapping or checkpoints.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        name: str = "custom",
        dtype: torch.dtype | None = None,
    ) -> None:
        """``dtype`` is the dtype of the returned tokens; None = the model's (first) parameter dtype."""
        if max_length < 1:
            raise ValueError(f"text encoder max_length must be >= 1, got {max_length}")
        position_limit = getattr(model.config, "max_position_embeddings", None)
        if position_limit is not None and max_length > position_limit:
            raise ValueError(
                f"text encoder {name!r}: max_length={max_length} exceeds the model's {position_limit} positions"
            )
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self._max_length = max_length
        self._dtype = dtype or model.dtype

    @classmethod
    def from_config(
        cls,
        name: str,
        path: str | Path | None = None,
        max_length: int | None = None,
        dtype: str | torch.dtype = "auto",
        device: torch.device | str = "cpu",
        seed: int = 0,
        dim: int | None = None,
    ) -> TextEncoder:
        """Build a known encoder (see ``KNOWN_TEXT_ENCODERS``) or, with name 't5'/'auto', any encoder at ``path``.

        ``path`` is a local directory or a Hugging Face repo id already in the local cache; nothing is
        downloaded. ``seed`` and ``dim`` (its width, default 64) only matter for 'tiny-t5'. dtype
        'auto' = bf16 on CUDA, fp32 on CPU.
        """
        spec = lookup_text_encoder(name)
        torch_dtype = resolve_dtype(dtype, device)
        model, tokenizer = _load(name, spec, path, torch_dtype, seed, dim)
        hidden_dim = model.config.hidden_size
        if spec.hidden_dim is not None and spec.kind != "tiny-t5" and hidden_dim != spec.hidden_dim:
            raise ValueError(
                f"text encoder {name!r} should be {spec.hidden_dim}-dim but the weights loaded from {path} "
                f"are {hidden_dim}-dim; use name='t5' or 'auto' for a different model"
            )
        if max_length is None:
            max_length = spec.max_length or _tokenizer_limit(tokenizer) or DEFAULT_MAX_LENGTH
        return cls(model.to(device), tokenizer, max_length=max_length, name=name, dtype=torch_dtype)

    @property
    def hidden_dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def max_length(self) -> int:
        """Captions are truncated to this many tokens (special tokens included)."""
        return self._max_length

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the returned tokens and of the weights (transformers keeps a few T5 layers in fp32 under fp16)."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: torch.device | str) -> TextEncoder:
        """Move the weights; the dtype stays (an 'auto' fp32 CPU encoder stays fp32 on CUDA)."""
        self.model.to(device)
        return self

    def encode(self, captions: Sequence[str], batch_size: int | None = None) -> PackedText:
        """Encode captions into a PackedText (padding removed, truncated at ``max_length``).

        Every caption, the empty one included, yields at least one token: the tokenizer's special
        tokens ([CLS] [SEP] for BERT-like encoders, </s> for T5). ``batch_size`` bounds the
        encoder batch for long caption lists.
        """
        if isinstance(captions, str) or not all(isinstance(caption, str) for caption in captions):
            raise TypeError("captions must be a sequence of str")
        if not captions:
            raise ValueError("encode needs at least one caption")
        step = batch_size or len(captions)
        chunks = [self._encode_batch(list(captions[start:start + step])) for start in range(0, len(captions), step)]
        return chunks[0] if len(chunks) == 1 else PackedText.cat(chunks)

    __call__ = encode

    def _encode_batch(self, captions: list[str]) -> PackedText:
        batch = self.tokenizer(
            captions, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        input_ids = batch["input_ids"].to(self.device)
        attention_mask = batch["attention_mask"].to(self.device)
        # no_grad rather than inference_mode: the outputs must stay ordinary tensors that the trainable
        # text projection can save for backward. Autocast is disabled so an enclosing training
        # autocast region cannot change the encoder's configured precision.
        with torch.no_grad(), torch.autocast(device_type=self.device.type, enabled=False):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return PackedText.from_padded(hidden.to(self.dtype), attention_mask)


def _load(
    name: str, spec: TextEncoderSpec, path: str | Path | None, dtype: torch.dtype, seed: int, dim: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if spec.kind == "tiny-t5":
        if path is not None:
            raise ValueError("text encoder 'tiny-t5' is built in code and takes no path; use name='t5' to load one")
        model, tokenizer = build_tiny_t5(seed, dim or spec.hidden_dim or 64)
        return model.to(dtype), tokenizer
    if path is not None:
        directory = resolve_weights_dir(path, name=name)
    elif spec.kind == "minilm":
        directory = minilm_package_dir()
    elif spec.default_source is not None:
        directory = resolve_weights_dir(spec.default_source, name=name)
    else:
        raise ValueError(f"text encoder {name!r} needs path=<local directory or cached Hugging Face repo id>")
    # The packaged MiniLM is a plain BERT encoder: the generic AutoModel path loads it.
    kind = "auto" if spec.kind == "minilm" else spec.kind
    return load_pretrained_encoder(directory, kind=kind, dtype=dtype, name=name)


def _tokenizer_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    limit = tokenizer.model_max_length
    return limit if isinstance(limit, int) and 0 < limit < 100_000 else None  # HF uses ~1e30 for "unset"
