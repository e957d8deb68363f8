from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from infinity_train.geometry import pixel_size, scale_schedule
from infinity_train.tokenizer.bitwise_tokenizer import REG_VARIANT, BitwiseTokenizer

from tokenizer_helpers import TINY, tiny_tokenizer


def _images(height: int, width: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_decoding_bits_equals_decoding_the_quantized_latent(tokenizer16):
    image = _images(64, 64)
    with torch.no_grad():
        out = tokenizer16(image)
        from_latent = tokenizer16.decode(out.quantizer.latent)
    from_bits = tokenizer16.bits_to_image(tokenizer16.image_to_bits(image), scale_schedule(64, 1.0))
    assert torch.allclose(from_bits, from_latent, atol=1e-5)
    assert torch.allclose(out.reconstruction.clamp(-1, 1), from_latent, atol=1e-5)


@pytest.mark.parametrize("h_div_w", [1.0, 2.0, 0.5, 1.333])
def test_image_to_bits_shapes_follow_the_template(tokenizer16, h_div_w):
    schedule = scale_schedule(64, h_div_w)
    image = _images(*pixel_size(64, h_div_w))
    bits = tokenizer16.image_to_bits(image)  # schedule found from the image size
    assert [tuple(b.shape) for b in bits] == [(2, h, w, 16) for h, w in schedule]
    assert tokenizer16.bits_to_image(bits, schedule).shape == image.shape
    assert tokenizer16.bits_to_image(bits[:2], schedule).shape == image.shape  # partial decode


def test_patchify_tokens_carry_four_latent_positions():
    tokenizer = tiny_tokenizer(8, patchify=True)
    assert tokenizer.stride == 8 and tokenizer.token_dim == 32
    schedule = scale_schedule(64, 1.0)
    image = _images(64, 64)
    bits = tokenizer.image_to_bits(image, schedule)
    assert [tuple(b.shape) for b in bits] == [(2, h, w, 32) for h, w in schedule]
    with torch.no_grad():
        out = tokenizer(image, schedule)
    assert [tuple(b.shape) for b in out.quantizer.bits] == [(2, 2 * h, 2 * w, 8) for h, w in schedule]
    assert torch.allclose(tokenizer.bits_to_image(bits, schedule), tokenizer.decode(out.quantizer.latent), atol=1e-5)


def test_gradient_reaches_the_encoder_through_the_quantizer(tokenizer16):
    out = tokenizer16(_images(64, 64))
    (out.reconstruction - _images(64, 64, seed=1)).abs().mean().backward()
    grad = tokenizer16.encoder.conv_in.conv.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_images_outside_every_schedule_are_refused(tokenizer16):
    with pytest.raises(ValueError, match="token grid 5x5 is not the last scale"):
        tokenizer16.image_to_bits(_images(80, 80))
    with pytest.raises(ValueError, match="not divisible by the tokenizer stride"):
        tokenizer16.image_to_bits(_images(72, 64))
    with pytest.raises(ValueError, match=r"ends at \(8, 8\)"):
        tokenizer16.image_to_bits(_images(64, 64), scale_schedule(128, 1.0))
    with pytest.raises(ValueError, match="bits have 8 channels, this tokenizer has d=16"):
        tokenizer16.bits_to_latent([torch.zeros(1, 1, 1, 8, dtype=torch.bool)], scale_schedule(64, 1.0))


def test_from_config_reads_the_tokenizer_config_fields():
    config = SimpleNamespace(d=12, patchify=False, latent_layernorm=True, loss=SimpleNamespace(reg=True), **TINY)
    tokenizer = BitwiseTokenizer.from_config(config)
    assert tokenizer.d == 12 and tokenizer.architecture["channel_multipliers"] == TINY["channel_multipliers"]
    assert tokenizer.architecture["latent_layernorm"] is True
    assert tokenizer.quantizer.drop_trailing_prob == REG_VARIANT["drop_trailing_prob"]
    assert tokenizer.quantizer.num_partial_scales == REG_VARIANT["num_partial_scales"]


def test_reg_variant_decodes_partial_sums():
    tokenizer = tiny_tokenizer(16, drop_trailing_prob=0.0, num_partial_scales=1).train()
    out = tokenizer(_images(64, 64), generator=torch.Generator().manual_seed(0))
    assert len(out.partial_reconstructions) == 1
    (k, partial), = out.partial_reconstructions.items()
    with torch.no_grad():
        expected = tokenizer.decoder(tokenizer.bits_to_latent(out.quantizer.bits[: k + 1], scale_schedule(64, 1.0)))
    assert torch.allclose(partial, expected, atol=1e-5)


def test_latent_layernorm_keeps_the_latent_at_the_code_scale_whatever_the_encoder_gain():
    images = _images(64, 64, batch=4)
    plain, normed = tiny_tokenizer(16), tiny_tokenizer(16, latent_layernorm=True)
    for tokenizer in (plain, normed):
        with torch.no_grad():
            tokenizer.encoder.conv_out.conv.weight.mul_(100.0)  # an encoder whose output has drifted large
    with torch.no_grad():
        norms = {name: t(images).quantizer.latent_norm.item() for name, t in (("plain", plain), ("normed", normed))}
        per_position = normed.encode(images).norm(dim=1)
    assert norms["plain"] > 20
    assert norms["normed"] == pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(per_position, torch.ones_like(per_position), atol=1e-3)
    assert torch.equal(normed.image_to_bits(images)[0], normed(images).quantizer.bits[0])  # one latent for both paths


def test_latent_layernorm_parameters_train():
    tokenizer = tiny_tokenizer(16, latent_layernorm=True)
    out = tokenizer(_images(64, 64))
    (out.reconstruction - _images(64, 64, seed=1)).abs().mean().backward()
    assert tokenizer.quantizer.layernorm.weight.grad.abs().sum() > 0
    assert torch.allclose(tokenizer.quantizer.layernorm.weight.detach(), torch.full((16,), 0.25))
