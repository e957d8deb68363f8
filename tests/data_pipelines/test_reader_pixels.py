"""What reaches the model: the reader's pixels against a reference decode, uint8 batches and their
conversion, and DataLoader workers delivering exactly the batches of the in-process reader."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

import data_pipelines.reader.dataset as reader_dataset
from data_pipelines.reader import build_reader, to_model_range
from data_pipelines.reader.dataset import READER_INFO, EpochDataset
from data_pipelines.reader.example_shards import encode, example_captions, photo_like_image
from data_pipelines.reader.images import PIXEL_TOLERANCE, decode_jpeg_scaled, decode_to_size, pixel_difference, reference_decode
from data_pipelines.shards import ShardWriter, split_entry, write_split_entry


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photograph that ships with matplotlib (Grace Hopper, 512x600)."""
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        return Image.open(io.BytesIO(file.read())).convert("RGB")


CASES = [  # (crop of the photo, target (h, w))
    ((0, 0, 512, 600), (256, 256)),  # 2x: draft at 1/2
    ((0, 0, 512, 600), (64, 48)),  # 8x: draft at 1/8, plus Pillow's reduce
    ((60, 80, 460, 380), (256, 320)),  # under 2x: full decode
    ((100, 100, 300, 220), (256, 256)),  # smaller than the target: upscaled
]


def test_reader_pixels_are_draft_mode_within_tolerance_of_a_full_decode(photo):
    means = []
    for crop, target_hw in CASES:
        data = jpeg(photo.crop(crop))
        got = decode_to_size(data, target_hw)
        assert got.shape == (*target_hw, 3) and got.dtype == np.uint8
        # libjpeg-turbo via simplejpeg gives Pillow's draft-mode pixels bit for bit
        assert np.array_equal(got, decode_to_size(data, target_hw, simd_jpeg=False))
        diff = pixel_difference(got, reference_decode(data, target_hw))
        assert diff["mean"] <= PIXEL_TOLERANCE["image_mean"], (crop, target_hw, diff)
        if crop == (60, 80, 460, 380) or crop == (100, 100, 300, 220):
            assert diff["max"] == 0, diff  # no DCT scaling, no reduce: exactly the reference
        means.append(diff["mean"])
    assert 0 < np.mean(means) <= PIXEL_TOLERANCE["mean"], means


def test_the_tolerance_catches_a_shifted_or_swapped_image(photo):
    want = reference_decode(jpeg(photo), (256, 256))
    shifted = decode_to_size(jpeg(photo.crop((4, 0, 512, 600))), (256, 256))  # the crop 4 source pixels off
    assert pixel_difference(shifted, want)["mean"] > PIXEL_TOLERANCE["mean"]
    far = decode_to_size(jpeg(photo.crop((16, 0, 512, 600))), (256, 256))
    assert pixel_difference(far, want)["mean"] > PIXEL_TOLERANCE["image_mean"]
    assert pixel_difference(np.ascontiguousarray(want[..., ::-1]), want)["mean"] > PIXEL_TOLERANCE["image_mean"]


def test_gray_and_cmyk_jpegs_decode_as_pillow_does():
    rng = np.random.default_rng(0)
    gray = Image.fromarray((rng.random((90, 120)) * 255).astype(np.uint8), "L")
    data = jpeg(gray)
    assert np.array_equal(decode_to_size(data, (32, 32)), decode_to_size(data, (32, 32), simd_jpeg=False))
    cmyk = jpeg(photo_like_image(rng, 80, 60).convert("CMYK"))
    assert decode_jpeg_scaled(cmyk, 32, 32) is None  # left to Pillow, which converts CMYK
    assert np.array_equal(decode_to_size(cmyk, (32, 32)), decode_to_size(cmyk, (32, 32), simd_jpeg=False))
    assert decode_jpeg_scaled(b"\xff\xd8 not a jpeg", 8, 8) is None


def test_to_model_range_is_the_old_float_conversion():
    pixels = torch.arange(256, dtype=torch.uint8).repeat(2 * 3 * 4 * 8 // 256 + 1)[: 2 * 4 * 8 * 3]
    images = pixels.reshape(2, 4, 8, 3).permute(0, 3, 1, 2)  # the reader's channels-last uint8 view
    out = to_model_range(images)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 8) and out.is_contiguous()
    assert torch.equal(out, images.float().div(127.5).sub(1.0))
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert to_model_range(out) is out  # float batches (e.g. already converted) pass through


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pixel_shards")
    rng = np.random.default_rng(3)
    sizes = [(64, 48), (48, 64), (56, 56), (90, 40)]
    with ShardWriter(directory, "train", 8) as writer:
        for i in range(48):
            width, height = sizes[i % len(sizes)]
            long_caption, short_caption = example_captions(i, rng)
            files = {"jpg": encode(photo_like_image(rng, width, height), "jpg"), "json": json.dumps({"long_caption": long_caption, "text": short_caption}).encode()}
            writer.write(f"p-{i:03d}", files, h_div_w=height / width)
    write_split_entry(directory, "train", split_entry("train", writer.shards, complete=True))
    return directory


def test_workers_deliver_the_batches_of_the_in_process_reader(shard_dir, monkeypatch):
    settings = dict(resolution=64, batch_size_per_rank=4, rank=0, world_size=1, num_workers=2, seed=5, shuffle_buffer=6)
    reader = build_reader(str(shard_dir), **settings)
    from_workers = list(reader)
    assert len(from_workers) == reader.steps_per_epoch

    # The same epoch read in this process: each worker's share in turn, interleaved as the
    # DataLoader does (batch j comes from worker j % 2).
    twin = build_reader(str(shard_dir), **settings)
    per_worker = []
    for worker in range(2):
        monkeypatch.setattr(reader_dataset, "get_worker_info", lambda w=worker: SimpleNamespace(id=w, num_workers=2))
        per_worker.append(list(EpochDataset(twin.config, twin.plan(0), 0)))
    in_process = [per_worker[j % 2][j // 2] for j in range(len(from_workers))]

    for got, want in zip(from_workers, in_process, strict=True):
        want.pop(READER_INFO)
        assert got.keys() == want.keys()
        assert got["keys"] == want["keys"] and got["captions"] == want["captions"] and got["h_div_w"] == want["h_div_w"]
        assert got["images"].dtype == torch.uint8 and torch.equal(got["images"], want["images"])
        assert torch.equal(to_model_range(got["images"]), to_model_range(want["images"]))
    keys = [k for batch in from_workers for k in batch["keys"]]
    assert sorted(keys) == [f"p-{i:03d}" for i in range(48)]  # every sample once
