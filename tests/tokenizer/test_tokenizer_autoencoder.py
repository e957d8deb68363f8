from __future__ import annotations

import pytest
import torch

from infinity_train.geometry import SUPPORTED_D
from infinity_train.tokenizer.autoencoder import Decoder, Encoder, group_count
from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer
from infinity_train.tokenizer.quantizer import MultiScaleBSQ

from tokenizer_helpers import TINY


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_reference_sizes_match_published_parameter_counts():
    with torch.device("meta"):
        encoder, decoder = Encoder(32), Decoder(32)
    assert _millions(encoder) == pytest.approx(45.0, abs=0.05)
    assert _millions(decoder) == pytest.approx(65.1, abs=0.05)


@pytest.mark.parametrize("channels, groups", [(128, 32), (512, 32), (48, 24), (40, 20), (16, 16), (8, 8), (3, 3)])
def test_group_count_is_largest_divisor_up_to_32(channels, groups):
    assert group_count(channels) == groups


@pytest.mark.parametrize("patchify, stride", [(False, 16), (True, 8)])
def test_encoder_decoder_shapes_on_non_square_images(patchify, stride):
    torch.manual_seed(0)
    encoder = Encoder(12, TINY["base_channels"], TINY["channel_multipliers"], 1, patchify)
    decoder = Decoder(12, TINY["base_channels"], TINY["channel_multipliers"], 1, patchify)
    image = torch.rand(2, 3, 48, 80) * 2 - 1
    latent = encoder(image)
    assert latent.shape == (2, 12, 48 // stride, 80 // stride)
    assert decoder(latent).shape == image.shape


def test_patchify_removes_one_downsampling():
    with torch.device("meta"):
        plain, patchified = Encoder(16), Encoder(16, patchify=True)
    names = lambda m: {n for n, _ in m.named_modules() if n.endswith("downsample")}  # noqa: E731
    assert names(plain) == {f"down.{i}.downsample" for i in range(4)}
    assert names(patchified) == {f"down.{i}.downsample" for i in range(3)}


def test_decode_clamps_to_image_range(tokenizer16):
    latent = torch.randn(1, 16, 2, 2) * 50
    image = tokenizer16.decode(latent)
    assert image.min() >= -1 and image.max() <= 1
    assert (tokenizer16.decoder(latent).abs() > 1).any()  # the clamp is doing something


@pytest.mark.parametrize("d", [7, 10, 20, 128])
def test_unsupported_latent_dim_is_refused(d):
    """d is checked once, where a tokenizer is built (the config validator checks it before that)."""
    with pytest.raises(ValueError, match=r"d=\d+ is not supported"):
        BitwiseTokenizer(d, **_tiny_args())
    assert set(SUPPORTED_D) == {8, 12, 14, 16, 24, 32, 48, 64}  # 14: Infinity-8B's patchified tokenizer


def _tiny_args() -> dict:
    return {"base_channels": 8, "channel_multipliers": (1, 1, 2, 2, 2)}


def test_wrong_channel_count_and_indivisible_size_are_refused(tokenizer16):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tokenizer16.encode(torch.zeros(1, 4, 64, 64))
    with pytest.raises(ValueError, match="not divisible by the tokenizer stride 16"):
        tokenizer16.encode(torch.zeros(1, 3, 64, 72))
    with pytest.raises(ValueError, match=r"\(B, 16, h, w\)"):
        tokenizer16.decode(torch.zeros(1, 8, 4, 4))


def test_too_few_levels_for_the_stride_is_refused():
    with pytest.raises(ValueError, match="stride of 16 needs at least 5"):
        BitwiseTokenizer(16, base_channels=8, channel_multipliers=(1, 2, 4, 4))
    BitwiseTokenizer(16, base_channels=8, channel_multipliers=(1, 2, 4, 4), patchify=True)  # stride 8 fits
