"""Multi-scale bitwise (BSQ) tokenizer: autoencoder, quantizer API, self-correction, losses."""

from infinity_train.tokenizer.autoencoder import Decoder, Encoder
from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer, TokenizerOutput
from infinity_train.tokenizer.losses import LossTerms, TokenizerLoss
from infinity_train.tokenizer.quantizer import (
    MultiScaleBSQ,
    QuantizerOutput,
    bits_to_latent,
    encode_bits,
    flatten_bits,
    next_scale_input,
    schedule_for_grid,
    teacher_forcing_inputs,
)
from infinity_train.tokenizer.reference import REFERENCE_TOKENIZERS, load_reference_tokenizer, load_tokenizer_checkpoint

__all__ = [
    "REFERENCE_TOKENIZERS",
    "BitwiseTokenizer",
    "Decoder",
    "Encoder",
    "LossTerms",
    "TokenizerLoss",
    "MultiScaleBSQ",
    "QuantizerOutput",
    "TokenizerOutput",
    "bits_to_latent",
    "encode_bits",
    "flatten_bits",
    "load_reference_tokenizer",
    "load_tokenizer_checkpoint",
    "next_scale_input",
    "schedule_for_grid",
    "teacher_forcing_inputs",
]
