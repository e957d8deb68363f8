"""write_synthetic_dataset: deterministic, idempotent, resumable shards of checkable samples."""

import io
import json

import pytest
import webdataset as wds
from PIL import Image

from data_pipelines.shards import read_manifest
from data_pipelines.synthetic import SceneSpec, check, write_synthetic_dataset
from infinity_train.geometry import pixel_size

ARGS = dict(num_samples=25, resolution=64, aspect_ratios=(1.0, 0.5, 2.0), samples_per_shard=10, seed=3)


def _shard_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tar"))}


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    write_synthetic_dataset(tmp_path / "a", **ARGS)
    write_synthetic_dataset(tmp_path / "b", **ARGS)
    write_synthetic_dataset(tmp_path / "c", **{**ARGS, "seed": 4})
    a, b, c = (_shard_bytes(tmp_path / d) for d in "abc")
    assert list(a) == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert a == b
    assert all(a[name] != c[name] for name in a)


def test_samples_have_the_documented_fields_and_pass_the_checker(tmp_path):
    report = write_synthetic_dataset(tmp_path, **ARGS, image_format="jpg")
    pattern = str(tmp_path / report.pattern)
    samples = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    assert len(samples) == 25 and len({s["__key__"] for s in samples}) == 25
    for sample in samples:
        meta = json.loads(sample["json"])
        assert set(meta) == {"long_caption", "text", "h_div_w", "width", "height", "spec"}
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert (meta["height"], meta["width"]) == pixel_size(64, meta["h_div_w"]) == (image.height, image.width)
        spec = SceneSpec.from_dict(meta["spec"])
        assert check(spec, image)["overall"] == 1.0


def test_manifest_counts(tmp_path):
    write_synthetic_dataset(tmp_path, **ARGS)
    write_synthetic_dataset(tmp_path, **{**ARGS, "num_samples": 4}, split="val")
    splits = read_manifest(tmp_path)["splits"]
    train = splits["train"]
    assert train["complete"] and train["num_samples"] == 25 and train["num_shards"] == 3
    assert train["pattern"] == "train-{000000..000002}.tar"
    assert [s["num_samples"] for s in train["shards"]] == [10, 10, 5]
    assert train["aspect_ratios"] == {"0.5": 8, "1.0": 9, "2.0": 8}
    assert sum(sum(s["aspect_ratios"].values()) for s in train["shards"]) == 25
    assert splits["val"]["num_samples"] == 4 and splits["val"]["pattern"] == "val-{000000..000000}.tar"


def test_rerun_skips_complete_shards(tmp_path):
    first = write_synthetic_dataset(tmp_path, **ARGS)
    assert (first.shards_written, first.shards_skipped) == (3, 0)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.tar")}
    progress = []
    again = write_synthetic_dataset(tmp_path, **ARGS, progress=progress.append)
    assert (again.shards_written, again.shards_skipped) == (0, 3) and sum(progress) == 25
    assert "already complete" in again.summary()
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.tar")} == stamps


def test_interrupted_job_resumes_after_its_last_finished_shard(tmp_path):
    reference = tmp_path / "reference"
    write_synthetic_dataset(reference, **ARGS)

    done = []

    def die_after_15(count):
        done.append(count)
        if sum(done) == 15:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "job", **ARGS, progress=die_after_15)
    job = tmp_path / "job"
    assert sorted(p.name for p in job.glob("*.tar")) == ["train-000000.tar"]
    assert not list(job.glob("*.partial")) and read_manifest(job)["splits"]["train"]["complete"] is False

    resumed = write_synthetic_dataset(job, **ARGS)
    assert (resumed.shards_written, resumed.shards_skipped) == (2, 1)
    assert _shard_bytes(job) == _shard_bytes(reference)
    assert read_manifest(job)["splits"]["train"]["complete"] is True


def test_changed_arguments_rewrite_the_split(tmp_path):
    write_synthetic_dataset(tmp_path, **ARGS)
    report = write_synthetic_dataset(tmp_path, **{**ARGS, "num_samples": 8})
    assert (report.shards_written, report.shards_skipped) == (1, 0)
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["train-000000.tar"]
    assert read_manifest(tmp_path)["splits"]["train"]["num_samples"] == 8


@pytest.mark.parametrize(
    "override, message",
    [
        ({"resolution": 100}, "resolution 100"),
        ({"aspect_ratios": (0.9,)}, "not an aspect template"),
        ({"num_samples": 0}, "number of samples"),
        ({"samples_per_shard": 0}, "samples per shard"),
        ({"image_format": "bmp"}, "image format"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_dataset(tmp_path, **{**ARGS, **override})
