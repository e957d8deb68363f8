"""The Infinity transformer (a plain nn.Module), its loss and its KV-cached sampler."""

from infinity_train.models.infinity import InferenceCache, InfinityTransformer, ffn_hidden_width
from infinity_train.models.loss import BitwiseLoss, bitwise_loss, scale_loss_weights
from infinity_train.models.sampling import GeneratedBits, generate_bits, sample_bits

__all__ = [
    "BitwiseLoss",
    "GeneratedBits",
    "InferenceCache",
    "InfinityTransformer",
    "bitwise_loss",
    "ffn_hidden_width",
    "generate_bits",
    "sample_bits",
    "scale_loss_weights",
]
