"""Resuming from state_dict() replays exactly: the batches after a restart are the batches an
uninterrupted run would have produced (keys, captions, pixels), and the counters agree too."""

from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest
import torch

from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import encode, example_captions, photo_like_image
from data_pipelines.shards import ShardWriter, split_entry, write_split_entry

SIZES = [(48, 36), (40, 40), (36, 48)]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """80 samples in 9 shards; every 11th has a broken image, so bad data is replayed too."""
    directory = tmp_path_factory.mktemp("resume_shards")
    rng = np.random.default_rng(0)
    with ShardWriter(directory, "train", 9) as writer:
        for i in range(80):
            width, height = SIZES[i % len(SIZES)]
            image = b"not an image" if i % 11 == 5 else encode(photo_like_image(rng, width, height), "jpg")
            long_caption, short_caption = example_captions(i, rng)
            metadata = {"long_caption": long_caption, "text": short_caption}
            writer.write(f"s-{i:03d}", {"jpg": image, "json": json.dumps(metadata).encode()}, h_div_w=height / width)
    write_split_entry(directory, "train", split_entry("train", writer.shards, complete=True))
    return directory


def make_reader(shards, num_workers, **options):
    settings = dict(resolution=64, batch_size_per_rank=4, rank=1, world_size=2, num_workers=num_workers, seed=7, shuffle_buffer=10)
    return build_reader(shards, **(settings | options))


def read(reader, count: int) -> list[dict]:
    """``count`` batches, crossing into the next epoch when one ends (as a trainer loop does)."""
    batches = []
    while len(batches) < count:
        batches += list(islice(iter(reader), count - len(batches)))
    return batches


def assert_same_batches(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got["keys"] == want["keys"] and got["captions"] == want["captions"] and got["h_div_w"] == want["h_div_w"]
        assert torch.equal(got["images"], want["images"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_reader_continues_exactly(shard_dir, num_workers):
    shards = str(shard_dir)
    steps = make_reader(shards, num_workers).steps_per_epoch
    total = steps + 5  # into the second epoch
    uninterrupted_reader = make_reader(shards, num_workers)
    uninterrupted = read(uninterrupted_reader, total)
    for stop in (3, steps):  # mid-epoch, and exactly at the epoch's end
        first = make_reader(shards, num_workers)
        head = read(first, stop)
        state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
        resumed = make_reader(shards, num_workers)
        resumed.load_state_dict(state)
        tail = read(resumed, total - stop)
        assert_same_batches(head + tail, uninterrupted)
        assert resumed.stats() == uninterrupted_reader.stats()
    assert uninterrupted_reader.stats()["skipped/bad_image"] > 0


def test_resampled_mixture_resumes_exactly(shard_dir, tmp_path):
    sources = [(str(shard_dir / "train-{000000..000005}.tar"), 2.0), (str(shard_dir / "train-{000006..000008}.tar"), 1.0)]
    options = dict(resampled=True, sources=sources, steps_per_epoch=6)
    uninterrupted = read(make_reader(None, 2, **options), 10)
    first = make_reader(None, 2, **options)
    head = read(first, 4)
    resumed = make_reader(None, 2, **options)
    resumed.load_state_dict(first.state_dict())
    assert_same_batches(head + read(resumed, 6), uninterrupted)


def test_state_from_other_settings_is_refused(shard_dir):
    saved = make_reader(str(shard_dir), 0).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        make_reader(str(shard_dir), 0, batch_size_per_rank=5).load_state_dict(saved)
    with pytest.raises(ValueError, match="num_workers"):
        make_reader(str(shard_dir), 2).load_state_dict(saved)
    with pytest.raises(ValueError, match="rank 1 loaded on rank 0"):
        make_reader(str(shard_dir), 0, rank=0).load_state_dict(saved)
