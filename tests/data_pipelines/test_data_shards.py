"""Tar shards: rolling writer, atomic completion, manifest, reading back with webdataset."""

import json
import tarfile

import pytest
import webdataset as wds

from data_pipelines.shards import (
    ShardWriter,
    brace_pattern,
    check_key,
    expand_shards,
    iter_samples,
    names_pattern,
    read_manifest,
    split_entry,
    write_split_entry,
)


def _write(directory, count, per_shard, prefix="train"):
    with ShardWriter(directory, prefix, per_shard) as writer:
        for i in range(count):
            payload = json.dumps({"i": i}).encode()
            writer.write(f"{prefix}-{i:04d}", {"txt": f"sample {i}".encode(), "json": payload}, h_div_w=(1.0, 0.5)[i % 2])
    return writer.shards


def test_rolls_shards_and_counts_samples(tmp_path):
    shards = _write(tmp_path, 23, 10)
    assert [s.name for s in shards] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [s.num_samples for s in shards] == [10, 10, 3]
    assert shards[0].aspect_ratios == {"0.5": 5, "1.0": 5}
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.name for s in shards]
    entry = split_entry("train", shards, complete=True)
    assert entry["pattern"] == "train-{000000..000002}.tar" and entry["num_samples"] == 23
    assert entry["aspect_ratios"] == {"0.5": 11, "1.0": 12}


def test_webdataset_reads_every_sample_once(tmp_path):
    _write(tmp_path, 23, 10)
    pattern = str(tmp_path / brace_pattern("train", 3))
    keys = [s["__key__"] for s in wds.WebDataset(pattern, shardshuffle=False, empty_check=False)]
    assert keys == [f"train-{i:04d}" for i in range(23)]
    samples = list(iter_samples(expand_shards(pattern)))
    assert [json.loads(s["json"])["i"] for s in samples] == list(range(23))
    assert samples[3]["txt"] == b"sample 3"


def test_interrupted_shard_never_appears_under_its_final_name(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "train", 10) as writer:
            for i in range(15):
                writer.write(f"k{i}", {"txt": b"x"})
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000000.tar"]
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        assert len(tar.getmembers()) == 10


@pytest.mark.parametrize("key", ["a/b", "../x", "a.b", "", "a b", "a\\b"])
def test_unsafe_keys_are_rejected(key, tmp_path):
    with pytest.raises(ValueError, match="unsafe sample key"):
        check_key(key)
    with pytest.raises(ValueError):
        ShardWriter(tmp_path, "train", 5).write(key, {"txt": b"x"})


def test_same_samples_give_identical_bytes(tmp_path):
    _write(tmp_path / "a", 12, 5)
    _write(tmp_path / "b", 12, 5)
    for name in ("train-000000.tar", "train-000001.tar", "train-000002.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_manifest_keeps_other_splits(tmp_path):
    write_split_entry(tmp_path, "train", split_entry("train", _write(tmp_path, 5, 2), complete=True))
    write_split_entry(tmp_path, "val", split_entry("val", _write(tmp_path, 3, 2, prefix="val"), complete=True))
    manifest = read_manifest(tmp_path)
    assert set(manifest["splits"]) == {"train", "val"}
    assert manifest["splits"]["val"]["pattern"] == "val-{000000..000001}.tar"
    assert [p.name for p in expand_shards(tmp_path, "val")] == ["val-000000.tar", "val-000001.tar"]
    assert len(expand_shards(tmp_path)) == 5
    with pytest.raises(ValueError, match="no split"):
        expand_shards(tmp_path, "test")
    with pytest.raises(FileNotFoundError):
        expand_shards(str(tmp_path / "train-{000000..000009}.tar"))


def test_names_pattern_only_for_consecutive_numbered_names():
    assert names_pattern(["train-000000.tar", "train-000001.tar"]) == "train-{000000..000001}.tar"
    assert names_pattern(["00007.tar", "00008.tar", "00009.tar"]) == "{00007..00009}.tar"
    assert names_pattern(["train-000000.tar", "train-000002.tar"]) is None  # a gap
    assert names_pattern(["a-0.tar", "b-1.tar"]) is None and names_pattern([]) is None and names_pattern(["x.tar"]) is None
