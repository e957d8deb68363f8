"""from-manifest: reference-format CSV / JSON-lines manifests -> shards; relative paths resolve
against the manifest's folder; bad rows are skipped and counted; the image's own h/w is recorded."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from data_pipelines.cli import main
from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import encode, photo_like_image
from data_pipelines.shards import expand_shards, iter_samples, read_manifest

RNG = np.random.default_rng(1)


@pytest.fixture
def image_dir(tmp_path):
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    for name, (width, height) in {"a.jpg": (48, 36), "b.png": (36, 48), "c.jpg": (40, 40)}.items():
        (images / name).write_bytes(encode(photo_like_image(RNG, width, height), name.rsplit(".", 1)[1]))
    (images / "corrupt.jpg").write_bytes(b"garbage")
    return tmp_path / "data"


def rows(image_dir):
    absolute = str(image_dir / "images" / "c.jpg")
    return [
        {"image_path": "images/a.jpg", "h_div_w": 0.75, "long_caption": "A first. Then more.", "text": "first"},
        {"image_path": "images/b.png", "h_div_w": 1.0, "long_caption": "Declared square, really portrait.", "text": ""},
        {"image_path": absolute, "h_div_w": "n/a", "long_caption": "Absolute path.", "text": "abs"},
        {"image_path": "images/a.jpg", "h_div_w": 0.75, "long_caption": "The same image again, another caption."},
        {"image_path": "images/missing.jpg", "h_div_w": 1.0, "long_caption": "gone"},
        {"image_path": "images/corrupt.jpg", "h_div_w": 1.0, "long_caption": "broken"},
        {"image_path": "images/c.jpg", "h_div_w": 1.0, "long_caption": "", "text": ""},
        {"image_path": "", "long_caption": "no path"},
    ]


EXPECTED = {"missing_image": 1, "bad_image": 1, "missing_caption": 1, "bad_row": 1}


def check_output(out, summary, expected_skips=EXPECTED):
    assert summary["written"] == 4 and summary["skipped"] == expected_skips
    assert summary["notes"] == {"h_div_w_mismatch": 1, "h_div_w_invalid": 1}
    samples = list(iter_samples(expand_shards(out)))
    metadata = [json.loads(s["json"]) for s in samples]
    assert [m["long_caption"] for m in metadata] == [
        "A first. Then more.", "Declared square, really portrait.", "Absolute path.", "The same image again, another caption."
    ]
    assert [m["text"] for m in metadata] == ["first", None, "abs", None]
    assert metadata[1]["h_div_w"] == 48 / 36  # the image's own, not the declared 1.0
    assert len({s["__key__"] for s in samples}) == 4 and samples[0]["__key__"] == "images_a"
    batches = list(build_reader(str(out), resolution=64, batch_size_per_rank=2, num_workers=0))
    assert sum(len(b["keys"]) for b in batches) == 4


def test_jsonl_manifest(image_dir, tmp_path, capsys):
    manifest = image_dir / "train.jsonl"
    lines = [json.dumps(r) for r in rows(image_dir)] + ["", "{broken json", "[1, 2]"]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["from-manifest", str(manifest), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    check_output(out, summary, {**EXPECTED, "bad_row": 3})  # the empty path, the broken line and the non-object
    assert read_manifest(out)["splits"]["train"]["source"] == "manifest"


def test_csv_manifest_gives_the_same_shards_as_json_lines(image_dir, tmp_path, capsys):
    table = rows(image_dir)
    with open(image_dir / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_path", "h_div_w", "long_caption", "text"])
        writer.writeheader()
        writer.writerows(table)
    (image_dir / "train.json").write_text(json.dumps(table))  # a .json array works too
    assert main(["from-manifest", str(image_dir / "train.csv"), "--out", str(tmp_path / "csv")]) == 0
    check_output(tmp_path / "csv", json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert main(["from-manifest", str(image_dir / "train.json"), "--out", str(tmp_path / "json")]) == 0
    capsys.readouterr()
    csv_bytes = (tmp_path / "csv" / "train-000000.tar").read_bytes()
    assert (tmp_path / "json" / "train-000000.tar").read_bytes() == csv_bytes


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.csv", "path,caption\nx.jpg,hi\n", "no 'image_path' column; its columns: path, caption"),
        ("m.txt", "image_path\n", "must be .csv, .jsonl or .json"),
        ("m.json", "[{broken", "is not valid UTF-8 JSON"),
    ],
)
def test_unreadable_manifests_are_one_line_errors(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_text(content)
    assert main(["from-manifest", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()
