"""validate-wds on img2dataset-style shards ({key}.jpg + {key}.txt and/or {key}.json "caption"):
validated in place, bad samples counted per reason, manifest.json written so the reader's epoch
split is exact; the reader itself takes the .txt / "caption" convention."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

import numpy as np
import pytest

from data_pipelines.cli import main
from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import encode, photo_like_image
from data_pipelines.reader.metadata import MetadataError, caption_fields
from data_pipelines.shards import read_manifest

RNG = np.random.default_rng(2)
JPEG = encode(photo_like_image(RNG, 48, 36), "jpg")
SQUARE = encode(photo_like_image(RNG, 40, 40), "jpg")


def broken_pixels_png() -> bytes:
    data = bytearray(encode(photo_like_image(RNG, 40, 30), "png"))
    start = data.find(b"IDAT") + 8
    data[start : start + 32] = b"\xff" * 32
    return bytes(data)


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def img2dataset_sample(key: str, caption: str | None, image: bytes = JPEG, txt: bool = True, json_member: bool = True) -> list:
    members = [(f"{key}.jpg", image)]
    if txt:
        members.append((f"{key}.txt", (caption or "").encode()))
    if json_member:
        meta = {"url": f"https://example.invalid/{key}.jpg", "key": key, "status": "success", "caption": caption, "width": 48}
        members.append((f"{key}.json", json.dumps(meta).encode()))
    return members


BAD = {  # skip reason -> members, all in shard 00001
    "bad_image": img2dataset_sample("000010001", "cut", image=JPEG[:400]),
    "image_decode_error": img2dataset_sample("000010002", "pixels", image=broken_pixels_png()),
    "missing_caption": img2dataset_sample("000010003", None),
    "missing_image": [("000010004.txt", b"caption but no image")],
}


@pytest.fixture
def wds_dir(tmp_path):
    """Five shards of 6 samples; shard 00001 also holds the four bad ones; stats files as img2dataset writes them."""
    directory = tmp_path / "wds"
    directory.mkdir()
    for shard in range(5):
        members = []
        for i in range(6):
            key = f"{shard:05d}{i:04d}"
            style = i % 3  # .txt + .json, .txt only, .json only
            image = SQUARE if i % 2 else JPEG
            members += img2dataset_sample(key, f"Caption {key}. More text.", image, txt=style != 2, json_member=style != 1)
        if shard == 1:
            members += [m for sample in BAD.values() for m in sample]
        if shard == 4:
            members += img2dataset_sample("weird key", "Caption of a sample with a space in its key.")
        write_tar(directory / f"{shard:05d}.tar", members)
        stats = {"count": 10, "successes": 6 + (len(BAD) if shard == 1 else 0), "failed_to_download": 4}
        (directory / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    (directory / "00004_stats.json").write_text(json.dumps({"successes": 5}))  # disagrees with the shard
    (directory / "00000.parquet").write_bytes(b"PAR1 not read")
    return directory


def test_validate_counts_reasons_and_writes_the_manifest(wds_dir, capsys):
    before = {p.name: p.read_bytes() for p in wds_dir.glob("*.tar")}
    assert main(["validate-wds", "--shards", str(wds_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("train: 35 samples in 5 shards, 31 usable; skipped 4")
    summary = json.loads(out[-1])
    assert summary["skipped"] == {reason: 1 for reason in BAD}
    assert summary["notes"] == {"stats_mismatch": 1, "parquet_not_read": 1, "unsafe_keys": 1}
    assert {p.name: p.read_bytes() for p in wds_dir.glob("*.tar")} == before  # validated, not rewritten

    split = read_manifest(wds_dir)["splits"]["train"]
    assert split["pattern"] == "{00000..00004}.tar" and split["source"] == "webdataset"
    assert [s["num_samples"] for s in split["shards"]] == [6, 10, 6, 6, 7]  # every position the reader steps through
    assert split["shards"][0]["aspect_ratios"] == {"0.75": 3, "1.0": 3}
    assert sum(split["shards"][1]["aspect_ratios"].values()) == 7  # what the reader buckets: + the one whose pixels fail


def test_reader_reads_validated_img2dataset_shards_once_per_epoch(wds_dir):
    assert main(["validate-wds", "--shards", str(wds_dir / "{00000..00004}.tar")]) == 0
    keys, stats = [], Counter()
    for rank in (0, 1):
        reader = build_reader(
            str(wds_dir), resolution=64, batch_size_per_rank=3, aspect_ratios=[0.75, 1.0], rank=rank, world_size=2, num_workers=2,
            short_caption_prob=0.0,
        )
        batches = list(reader)
        keys += [k for b in batches for k in b["keys"]]
        assert all(c.startswith("Caption ") for b in batches for c in b["captions"])
        stats.update(reader.stats())
    good = {f"{shard:05d}{i:04d}" for shard in range(5) for i in range(6)} | {"weird key"}
    assert set(keys) == good
    # Repeats only where the reader says why: the sample whose pixels fail is replaced by a batch
    # mate, and a share left short by bad data repeats a batch to keep the steps equal.
    assert stats["replaced_samples"] == 1
    assert len(keys) - len(good) <= stats["replaced_samples"] + 3 * stats["padded_batches"]
    assert {k: v for k, v in stats.items() if k.startswith("skipped/")} == {f"skipped/{reason}": 1 for reason in BAD}


def test_validate_refuses_remote_and_double_listed_shards(wds_dir, capsys):
    assert main(["validate-wds", "--shards", "pipe:cat x.tar"]) == 2
    assert "must be local files" in capsys.readouterr().err
    assert main(["validate-wds", "--shards", str(wds_dir), "--split", "train"]) == 0
    capsys.readouterr()
    assert main(["validate-wds", "--shards", str(wds_dir / "{00000..00001}.tar"), "--split", "extra"]) == 2
    assert "already lists 00000.tar under split 'train'" in capsys.readouterr().err
    assert main(["validate-wds", "--shards", str(wds_dir / "{00007..00008}.tar")]) == 2
    assert "not found" in capsys.readouterr().err


def test_caption_rule_covers_both_conventions():
    assert caption_fields({"long_caption": "L", "text": "s"}).long == "L"
    assert caption_fields({"caption": "img2dataset caption", "text": None}).long == "img2dataset caption"
    assert caption_fields({}, b"from txt\n").long == "from txt"
    assert caption_fields({"caption": None}, b"from txt") == caption_fields({}, b"from txt")
    only_short = caption_fields({"text": "short"})
    assert (only_short.long, only_short.short) == ("short", "short")
    for metadata, txt, reason in (({}, b"  ", "missing_caption"), ({"caption": 3}, None, "invalid_caption"), ({}, b"\xff\xfe", "invalid_caption")):
        with pytest.raises(MetadataError) as error:
            caption_fields(metadata, txt)
        assert error.value.reason == reason
