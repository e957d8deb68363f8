"""The Infinity transformer (a plain nn.Module), its loss and its KV-cached sampler."""

from infinity_train.models.infinity import InferenceCache, InfinityTransformer, ffn_hidden_width
from infinity_train.models.loss import BitwiseLoss, bitwise_loss, scale_loss_weights
from infinity_train.models.sampling import GeneratedBits, generate_bits, sample_bits
from infinity_train.models.text_conditioning import PackedText, concat_text, pack_text

__all__ = [
    "BitwiseLoss",
    "GeneratedBits",
    "InferenceCache",
    "InfinityTransformer",
    "PackedText",
    "bitwise_loss",
    "concat_text",
    "ffn_hidden_width",
    "generate_bits",
    "pack_text",
    "sample_bits",
    "scale_loss_weights",
]
