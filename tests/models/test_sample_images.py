"""The reusable sampling pieces: ``sample_images`` (text -> bits -> pixels) and ``save_grid`` (PNG layout)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from infinity_train.build import build_text_encoder, build_tokenizer, build_transformer
from infinity_train.config import load_config, to_typed, validate
from infinity_train.models.sampling import generate_bits
from infinity_train.sample_command import sample_images, save_grid, to_uint8
from infinity_train.geometry import scale_schedule

SCHEDULE = scale_schedule(64, 1.333)  # (1,1) (2,2) (4,3): a 64 x 48 px image


@pytest.fixture(scope="module")
def parts():
    cfg = validate(to_typed(load_config(["model=debug1", "tokenizer=cpu_d8", "model.text_encoder.name=tiny-t5"])))
    torch.manual_seed(0)
    return build_transformer(cfg).eval(), build_tokenizer(cfg).eval(), build_text_encoder(cfg)


def test_images_are_the_decoded_generation_in_prompt_major_order(parts):
    model, tokenizer, text_encoder = parts
    images = sample_images(model, tokenizer, text_encoder, ["a", "b c"], SCHEDULE, cfg=2.5, tau=0.8, top_p=0.9, seed=3, per_prompt=2)
    assert images.shape == (4, 64, 48, 3) and images.dtype == torch.uint8

    encoded = text_encoder.encode(["a", "a", "b c", "b c"])
    generated = generate_bits(model, encoded, SCHEDULE, cfg=2.5, tau=0.8, top_p=0.9, generator=3)
    with torch.no_grad():
        expected = to_uint8(tokenizer.decode(generated.latent))
    assert torch.equal(images, expected)


def test_sampling_leaves_the_modules_in_their_mode(parts):
    model, tokenizer, text_encoder = parts
    model.train(), tokenizer.train()
    try:
        sample_images(model, tokenizer, text_encoder, ["a"], SCHEDULE, seed=0)
        assert model.training and tokenizer.training
    finally:
        model.eval(), tokenizer.eval()


def test_to_uint8_maps_the_range_ends():
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(images)[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_grid_places_images_row_by_row(tmp_path):
    colors = torch.arange(1, 6, dtype=torch.uint8) * 40  # five images, each one flat color
    images = colors.view(5, 1, 1, 1).expand(5, 4, 6, 3).contiguous()
    path = save_grid(images, tmp_path / "sub" / "grid.png", rows=2)
    with Image.open(path) as grid:
        assert grid.size == (3 * 6, 2 * 4)
        pixel = lambda row, col: grid.getpixel((col * 6 + 2, row * 4 + 1))
        assert [pixel(0, c) for c in range(3)] == [(40, 40, 40), (80, 80, 80), (120, 120, 120)]
        assert [pixel(1, c) for c in range(3)] == [(160, 160, 160), (200, 200, 200), (0, 0, 0)]  # last cell empty


def test_grid_rejects_float_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_grid(torch.zeros(2, 4, 4, 3), tmp_path / "grid.png", rows=1)
