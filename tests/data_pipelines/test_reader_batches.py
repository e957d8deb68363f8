"""Batches: one aspect template each, the template's pixel size, values in [-1, 1]; the fast
decoder matches a plain full decode; caption choice and sentence-aligned prefixes."""

from __future__ import annotations

import io
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from data_pipelines.reader import build_reader, to_model_range
from data_pipelines.reader.captions import choose_caption, sentence_ends, sentence_prefix
from data_pipelines.reader.example_shards import photo_like_image, write_example_shards
from data_pipelines.reader.images import decode_to_size
from data_pipelines.shards import expand_shards, iter_samples
from infinity_train.geometry import nearest_template, pixel_size

SIZES = [(48, 36), (36, 48), (40, 40), (64, 24), (30, 90)]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("batch_shards")
    write_example_shards(directory, 60, 10, sizes=SIZES, image_format="png")
    return directory


@pytest.fixture(scope="module")
def long_captions(shard_dir):
    return {s["__key__"]: json.loads(s["json"]) for s in iter_samples(expand_shards(shard_dir))}


def read_all(shard_dir, **options):
    settings = dict(resolution=64, batch_size_per_rank=4, num_workers=0, seed=0, shuffle_buffer=8) | options
    return list(build_reader(str(shard_dir), **settings))


def test_a_batch_holds_one_template_at_its_pixel_size_in_unit_range(shard_dir):
    batches = read_all(shard_dir)
    assert {b["h_div_w"] for b in batches} == {nearest_template(h / w) for w, h in SIZES}
    for batch in batches:
        assert batch["images"].dtype == torch.uint8  # uint8 until the model: to_model_range converts
        images = to_model_range(batch["images"])
        assert images.dtype == torch.float32 and images.shape[:2] == (len(batch["keys"]), 3) and images.is_contiguous()
        assert tuple(images.shape[2:]) == pixel_size(64, batch["h_div_w"])
        assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.05
        assert torch.equal(images, batch["images"].float() / 127.5 - 1.0)
        for key in batch["keys"]:
            width, height = SIZES[int(key.split("-")[1]) % len(SIZES)]
            assert nearest_template(height / width) == batch["h_div_w"]
        assert len(batch["captions"]) == len(batch["specs"]) == len(batch["keys"])
        assert all(spec["index"] == int(key.split("-")[1]) for spec, key in zip(batch["specs"], batch["keys"]))


def test_allowed_aspect_ratios_restrict_the_buckets(shard_dir):
    batches = read_all(shard_dir, aspect_ratios=[1.0])
    assert {b["h_div_w"] for b in batches} == {1.0}
    assert all(tuple(b["images"].shape[2:]) == (64, 64) for b in batches)
    assert sum(len(b["keys"]) for b in batches) == 60


def test_resize_is_a_center_crop_of_the_whole_image():
    # 80x40: left and right quarters red, middle blue; the square center crop must be all blue.
    array = np.zeros((40, 80, 3), np.uint8)
    array[:, :, 2] = 255
    array[:, :20] = array[:, 60:] = (255, 0, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    out = decode_to_size(buffer.getvalue(), (16, 16))
    assert out.shape == (16, 16, 3)
    assert out[..., 0].max() < 40 and out[..., 2].min() > 215


def test_draft_mode_jpeg_decoding_matches_a_full_decode():
    image = photo_like_image(np.random.default_rng(0), 1024, 768)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    size = pixel_size(256, nearest_template(768 / 1024))
    fast = decode_to_size(buffer.getvalue(), size).astype(np.float32)
    full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    scale = max(size[1] / full.width, size[0] / full.height)
    resized = full.resize((round(full.width * scale), round(full.height * scale)), Image.Resampling.LANCZOS)
    left, top = (resized.width - size[1]) // 2, (resized.height - size[0]) // 2
    reference = np.asarray(resized.crop((left, top, left + size[1], top + size[0])), np.float32)
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).mean() < 1.5  # of 255; a 3-pixel shift of the crop gives about 3.5


def test_sentence_ends_and_prefixes():
    text = 'A red cube. It sits "left of" a ball! Is it big? Yes'
    assert [text[:e] for e in sentence_ends(text)] == [
        "A red cube.",
        'A red cube. It sits "left of" a ball!',
        'A red cube. It sits "left of" a ball! Is it big?',
        text,
    ]
    assert sentence_ends("One 3.5 cm cube.  ") == [16]
    rng = random.Random(0)
    lengths = Counter(sentence_prefix(text, rng).count(" ") for _ in range(2000))
    assert len(lengths) == 4 and min(lengths.values()) > 400  # every prefix length, about uniformly


def test_short_caption_probability():
    rng = random.Random(1)
    long, short = "First sentence. Second sentence.", "short"
    picks = [choose_caption(long, short, 0.3, rng) for _ in range(4000)]
    assert abs(picks.count(short) / len(picks) - 0.3) < 0.03
    assert set(picks) == {short, "First sentence.", long}
    assert {choose_caption(long, None, 0.9, rng) for _ in range(200)} == {"First sentence.", long}


@pytest.mark.parametrize("short_prob", [0.0, 1.0])
def test_reader_captions_are_the_short_one_or_a_sentence_prefix(shard_dir, long_captions, short_prob):
    for batch in read_all(shard_dir, short_caption_prob=short_prob):
        for key, caption in zip(batch["keys"], batch["captions"]):
            metadata = long_captions[key]
            if short_prob == 1.0:
                assert caption == metadata["text"]
            else:
                long = metadata["long_caption"]
                assert caption != metadata["text"] and long.startswith(caption)
                assert len(caption) == len(long) or long[len(caption)] == " "
                assert caption.endswith(".")
