"""Bad data is skipped and counted per reason, never fatal: corrupt members, undecodable images,
bad or missing captions, truncated and damaged shards; nothing is unpickled or extracted."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import tarfile
from collections import Counter

import numpy as np
import pytest

from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import encode, photo_like_image
from data_pipelines.reader.images import looks_complete
from data_pipelines.reader.stats import ReaderCounters
from data_pipelines.reader.tar_stream import iter_shard_samples
from data_pipelines.shards import ShardWriter, split_entry, write_split_entry

RNG = np.random.default_rng(0)
GOOD_JPEG = encode(photo_like_image(RNG, 40, 30), "jpg")
LARGER_JPEG = encode(photo_like_image(RNG, 160, 120), "jpg")  # its header is a small part of the file


def good(index: int) -> dict[str, bytes]:
    return {"jpg": GOOD_JPEG, "json": json.dumps({"long_caption": f"Picture {index}. Second part.", "text": f"pic {index}"}).encode()}


def corrupt_png_pixels() -> bytes:
    """A PNG whose header and end are intact but whose compressed pixel data is garbage."""
    data = bytearray(encode(photo_like_image(RNG, 40, 30), "png"))
    start = data.find(b"IDAT") + 8
    data[start : start + 32] = b"\xff" * 32
    return bytes(data)


CORRUPT = [  # (skip reason, files) in the middle of shard 0
    ("bad_image", {"jpg": b"\x00garbage, not an image" * 20, "json": good(0)["json"]}),
    ("bad_image", {"jpg": LARGER_JPEG[: len(LARGER_JPEG) // 2], "json": good(0)["json"]}),  # cut short
    ("bad_json", {"jpg": GOOD_JPEG, "json": b'{"long_caption": "unterminated'}),
    ("missing_caption", {"jpg": GOOD_JPEG, "json": json.dumps({"width": 40, "height": 30}).encode()}),
    ("invalid_caption", {"jpg": GOOD_JPEG, "json": json.dumps({"long_caption": 42}).encode()}),
    ("missing_json", {"jpg": GOOD_JPEG}),
    ("missing_image", {"json": good(0)["json"]}),
    ("image_decode_error", {"png": corrupt_png_pixels(), "json": good(0)["json"]}),  # header and end fine
]


class Exploding:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_shards(directory, marker) -> set[str]:
    """Four shards: corrupt samples in the middle of 0, 1 truncated, 2 with a smashed header; returns good keys."""
    good_keys = set()
    with ShardWriter(directory, "train", 15) as writer:
        for i in range(4):
            writer.write(f"a-{i}", good(i))
            good_keys.add(f"a-{i}")
        for n, (reason, files) in enumerate(CORRUPT):
            writer.write(f"bad-{n}-{reason.replace('_', '-')}", files)
        writer.write("a-pickle", good(99) | {"pyd": pickle.dumps(Exploding(marker)), "pickle": pickle.dumps(Exploding(marker))})
        good_keys.add("a-pickle")
        for i in range(4, 6):
            writer.write(f"a-{i}", good(i))
            good_keys.add(f"a-{i}")
        for shard in (1, 2, 3):
            for i in range(15):
                writer.write(f"s{shard}-{i:02d}", good(i))
    write_split_entry(directory, "train", split_entry("train", writer.shards, complete=True))
    truncated = directory / "train-000001.tar"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    damaged = directory / "train-000002.tar"
    data = bytearray(damaged.read_bytes())
    with tarfile.open(damaged) as tar:
        header_offset = tar.getmembers()[12].offset  # the header of the 7th sample's first member
    data[header_offset : header_offset + 512] = os.urandom(512)
    damaged.write_bytes(bytes(data))
    for i in range(15):
        good_keys.add(f"s3-{i:02d}")
    return good_keys


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_samples_and_shards_are_skipped_and_counted(tmp_path, num_workers, caplog):
    marker = tmp_path / "unpickled"
    good_keys = write_shards(tmp_path / "shards", str(marker))
    reader = build_reader(
        str(tmp_path / "shards"), resolution=64, batch_size_per_rank=3, num_workers=num_workers, shuffle_buffer=5, log_first=1
    )
    with caplog.at_level(logging.WARNING, logger="data_pipelines.reader"):
        batches = list(reader)
    assert len(batches) == reader.steps_per_epoch
    keys = [k for b in batches for k in b["keys"]]
    assert good_keys <= set(keys)  # every intact sample of the undamaged regions arrives
    assert not [k for k in keys if k.startswith("bad-")]  # the undecodable one was replaced by a batch mate
    assert all(k.startswith(("a-", "s")) for k in keys)
    stats = reader.stats()
    expected = Counter(reason for reason, _ in CORRUPT)
    for reason, count in expected.items():
        assert stats[f"skipped/{reason}"] == count, reason
    assert stats["replaced_samples"] == 1  # the sample whose pixels failed was replaced
    assert stats["skipped/tar_error"] >= 2  # the truncated and the smashed shard (split shards count per reader)
    assert stats["skipped_total"] == sum(v for k, v in stats.items() if k.startswith("skipped/"))
    assert not marker.exists()
    assert not (tmp_path / "train-000000.tar").exists()
    if num_workers == 0:  # the main process's log: at most log_first lines per reason
        per_reason = [r.getMessage().split("(")[1].split(",")[0] for r in caplog.records]
        assert sorted(per_reason) == sorted(set(per_reason))


def test_member_names_are_never_used_as_paths(tmp_path):
    shard = tmp_path / "shards" / "evil-000000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for name, data in (("../escaped/x.jpg", GOOD_JPEG), ("../escaped/x.json", good(0)["json"])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    batches = list(build_reader(str(shard), resolution=64, batch_size_per_rank=1, num_workers=0))
    assert [b["keys"] for b in batches] == [["../escaped/x"]]
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "shards" / "escaped").exists()


def test_bad_data_logging_is_rate_limited(caplog):
    counters = ReaderCounters(log_first=3, log_every=10)
    with caplog.at_level(logging.WARNING, logger="data_pipelines.reader"):
        for i in range(25):
            counters.skip("bad_json", f"sample {i}")
        counters.skip("bad_image", "sample x")
    assert len(caplog.records) == 6  # occurrences 1, 2, 3, 10, 20 of bad_json, 1 of bad_image
    assert counters.snapshot() == {"skipped/bad_json": 25, "skipped/bad_image": 1}


@pytest.mark.parametrize("image_format", ["jpg", "png", "webp"])
def test_images_cut_short_are_recognized_from_their_bytes(image_format):
    data = encode(photo_like_image(RNG, 160, 120), image_format)
    pil_format = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[image_format]
    assert looks_complete(data, pil_format)
    assert looks_complete(data + b"\x00" * 16, pil_format)  # trailing padding is harmless
    for cut in (0.5, 0.9, 0.99):
        assert not looks_complete(data[: int(len(data) * cut)], pil_format)


def test_a_failing_pipe_command_is_one_shard_error(tmp_path):
    counters = ReaderCounters()
    assert list(iter_shard_samples(f"pipe:cat {tmp_path / 'missing.tar'}", counters, 0, 5)) == []
    assert counters.snapshot() == {"shards_opened": 1, "skipped/shard_error": 1}


def test_each_damaged_shard_is_counted_once_under_its_own_reason(tmp_path):
    from data_pipelines.reader.samples import prepare_sample

    with ShardWriter(tmp_path, "train", 8) as writer:
        for i in range(8):
            writer.write(f"a-{i}", good(i))
    whole = (tmp_path / "train-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with tarfile.open(tmp_path / "folders.tar", "w") as tar:
        entry = tarfile.TarInfo("a-folder")
        entry.type = tarfile.DIRTYPE
        tar.addfile(entry)
    (tmp_path / "random.tar").write_bytes(np.random.default_rng(5).bytes(6000))
    (tmp_path / "truncated.tar").write_bytes(whole[: len(whole) // 2 + 300])  # cut inside a sample's member
    for name, reason in [("empty", "empty_shard"), ("folders", "memberless_shard"), ("random", "not_a_tar"), ("truncated", "tar_error")]:
        counters = ReaderCounters()
        counters.logging_enabled = False
        stop = 8 if name == "truncated" else None  # the reader passes the manifest's count (a cut tar can end quietly)
        raws = iter_shard_samples(str(tmp_path / f"{name}.tar"), counters, stop=stop)
        samples = [prepare_sample(raw, [1.0, 0.75], counters) for raw in raws]
        skipped = {k: v for k, v in counters.counts.items() if k.startswith("skipped/")}
        assert skipped == {f"skipped/{reason}": 1}, name
        assert all(s is not None for s in samples)  # no half sample from the cut
    counters = ReaderCounters()
    assert len(list(iter_shard_samples(str(tmp_path / "train-000000.tar"), counters))) == 8 and not any(k.startswith("skipped/") for k in counters.counts)
