"""A tiny randomly initialized T5 encoder with a byte-level tokenizer, built in code for tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, T5Config, T5EncoderModel

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2 as in T5; byte b is id len(SPECIAL_TOKENS) + b
TINY_T5_DIM = 64
TINY_T5_MAX_LENGTH = 64


def build_byte_tokenizer(model_max_length: int = TINY_T5_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """UTF-8 byte tokenizer: one token per byte, ``</s>`` appended as T5 does (so "" -> one token)."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for byte, symbol in enumerate(_byte_symbols()):
        vocab[symbol] = len(SPECIAL_TOKENS) + byte
    # BPE with no merges over the byte alphabet splits every word into single bytes.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=model_max_length
    )


def tiny_t5_config(dim: int = TINY_T5_DIM) -> T5Config:
    """A 2-layer, 4-head T5 encoder of width ``dim`` (a multiple of 4): text paths of any width in tests."""
    if dim < 4 or dim % 4:
        raise ValueError(f"tiny-t5 width must be a positive multiple of 4, got {dim}")
    return T5Config(
        vocab_size=len(SPECIAL_TOKENS) + 256,
        d_model=dim,
        d_kv=dim // 4,
        d_ff=2 * dim,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",  # the Flan-T5 / T5 v1.1 feed-forward
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )


def build_tiny_t5(seed: int = 0, dim: int = TINY_T5_DIM) -> tuple[T5EncoderModel, PreTrainedTokenizerBase]:
    """Same seed and width -> identical weights; the global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(tiny_t5_config(dim))
    return model, build_byte_tokenizer()


def _byte_symbols() -> list[str]:
    """The printable stand-in character for each byte 0..255 used by byte-level pre-tokenization (GPT-2 map)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]
