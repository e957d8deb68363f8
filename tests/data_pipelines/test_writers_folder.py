"""from-folder: images + sidecar captions -> shards the reader reads; unchanged image bytes,
deterministic output, sanitized unique keys, every skipped input counted per reason."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from data_pipelines.cli import main
from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import encode, photo_like_image
from data_pipelines.shards import check_key, expand_shards, iter_samples, read_manifest
from data_pipelines.writers import KeyMaker, sanitize_key

RNG = np.random.default_rng(0)


def image_bytes(width: int, height: int, image_format: str = "jpg") -> bytes:
    return encode(photo_like_image(RNG, width, height), image_format)


@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "photos"
    (root / "trip" / "day 1").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    files = {
        "beach.jpg": image_bytes(48, 36),
        "beach.txt": b"A beach at dusk. Waves roll in.\n",
        "trip/day 1/Cafe.v2.PNG": image_bytes(30, 40, "png"),
        "trip/day 1/Cafe.v2.json": json.dumps({"long_caption": "A small cafe. Chairs outside.", "text": "a cafe"}).encode(),
        "trip/mountain.webp": image_bytes(40, 40, "webp"),
        "trip/mountain.json": json.dumps({"caption": "Snowy peaks."}).encode(),  # img2dataset-style field
        "png_named.jpg": image_bytes(32, 32, "png"),  # the content decides the member extension
        "png_named.txt": "Ünïcode caption ✓".encode(),
        # skipped:
        "no_caption.jpg": image_bytes(20, 20),
        "empty_caption.jpg": image_bytes(20, 20),
        "empty_caption.txt": b"   \n",
        "broken.jpg": b"\xff\xd8 not really a jpeg" * 10,
        "broken.txt": b"a broken file",
        "cut.jpg": image_bytes(160, 120)[:900],
        "cut.txt": b"cut short",
        "anim.gif": image_bytes(20, 20, "gif"),
        "anim.txt": b"a gif",
        "bad_json.jpg": image_bytes(20, 20),
        "bad_json.json": b"{not json",
        "latin1.jpg": image_bytes(20, 20),
        "latin1.txt": "caf\xe9".encode("latin-1"),
        # noted only:
        "lonely.txt": b"a caption without its image",
        # never read:
        ".hidden.jpg": image_bytes(20, 20),
        ".thumbnails/beach.jpg": image_bytes(20, 20),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root, files


EXPECTED_SKIPS = {"missing_caption": 2, "bad_image": 2, "unsupported_format": 1, "bad_json": 1, "invalid_caption": 1}


def test_folder_to_shards_keeps_bytes_counts_skips_and_reads_back(photo_folder, tmp_path, capsys):
    root, files = photo_folder
    out = tmp_path / "shards"
    assert main(["from-folder", str(root), "--out", str(out), "--samples-per-shard", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "wrote 4 samples in 2 shards" in lines[0] and "missing_caption=2" in lines[0]
    summary = json.loads(lines[-1])
    assert summary["written"] == 4 and summary["skipped"] == EXPECTED_SKIPS
    assert summary["skipped_total"] == sum(EXPECTED_SKIPS.values())
    assert summary["notes"] == {"caption_without_image": 1, "hidden_ignored": 2}  # .hidden.jpg and .thumbnails/

    samples = {s["__key__"]: s for s in iter_samples(expand_shards(out))}
    assert sorted(samples) == ["beach", "png_named", "trip_day_1_Cafe_v2", "trip_mountain"]
    assert samples["beach"]["jpg"] == files["beach.jpg"]
    assert samples["trip_day_1_Cafe_v2"]["png"] == files["trip/day 1/Cafe.v2.PNG"]
    assert samples["trip_mountain"]["webp"] == files["trip/mountain.webp"]
    assert samples["png_named"]["png"] == files["png_named.jpg"]
    cafe = json.loads(samples["trip_day_1_Cafe_v2"]["json"])
    assert cafe == {"long_caption": "A small cafe. Chairs outside.", "text": "a cafe", "h_div_w": 40 / 30, "width": 30,
                    "height": 40, "source": "trip/day 1/Cafe.v2.PNG"}
    assert json.loads(samples["beach"]["json"])["long_caption"] == "A beach at dusk. Waves roll in."
    assert json.loads(samples["png_named"]["json"])["long_caption"] == "Ünïcode caption ✓"

    split = read_manifest(out)["splits"]["train"]
    assert split["complete"] and split["num_samples"] == 4 and [s["num_samples"] for s in split["shards"]] == [3, 1]
    assert split["aspect_ratios"] == {"0.75": 1, "1.0": 2, "1.333": 1} and split["skipped"] == EXPECTED_SKIPS

    batches = list(build_reader(str(out), resolution=64, batch_size_per_rank=2, num_workers=0, short_caption_prob=1.0))
    assert sorted(k for b in batches for k in b["keys"]) == sorted(samples)
    captions = {k: c for b in batches for k, c in zip(b["keys"], b["captions"])}
    assert captions["trip_day_1_Cafe_v2"] == "a cafe" and captions["trip_mountain"] == "Snowy peaks."


def test_same_folder_gives_identical_shards(photo_folder, tmp_path):
    root, _ = photo_folder
    for name in ("a", "b"):
        assert main(["from-folder", str(root), "--out", str(tmp_path / name), "--samples-per-shard", "3"]) == 0
    for shard in ("train-000000.tar", "train-000001.tar"):
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_an_existing_split_needs_overwrite(photo_folder, tmp_path, capsys):
    root, _ = photo_folder
    out = tmp_path / "shards"
    assert main(["from-folder", str(root), "--out", str(out), "--samples-per-shard", "3"]) == 0
    capsys.readouterr()
    assert main(["from-folder", str(root), "--out", str(out)]) == 2
    assert "already has a split 'train'" in capsys.readouterr().err
    assert main(["from-folder", str(root), "--out", str(out), "--overwrite"]) == 0  # now one shard of 4
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar"]
    assert read_manifest(out)["splits"]["train"]["num_samples"] == 4


def test_member_names_are_safe_even_for_hostile_file_names(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    names = ["a..b", "-rf", "a b", "a_b", "x.tar.gz", "ü", "__init__", "a" * 150]
    for name in names:
        (root / f"{name}.jpg").write_bytes(image_bytes(16, 16))
        (root / f"{name}.txt").write_text(f"caption of {name}")
    out = tmp_path / "out"
    assert main(["from-folder", str(root), "--out", str(out)]) == 0
    with tarfile.open(out / "train-000000.tar") as tar:
        members = tar.getnames()
    keys = {m.rsplit(".", 1)[0] for m in members}
    assert len(keys) == len(names) and all(check_key(k) and len(k) <= 80 for k in keys)
    assert all("/" not in m and ".." not in m for m in members)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing written outside --out


def test_keys_are_sanitized_and_unique():
    assert sanitize_key("photos/Beach day.v2.JPG") == "photos_Beach_day_v2"
    assert sanitize_key("../../etc/passwd") == "etc_passwd"
    assert sanitize_key("/data/x/img-01.png") == "data_x_img-01"
    assert sanitize_key("....jpg") == "sample"
    assert len(sanitize_key("d/" + "x" * 300 + ".jpg")) == 80
    maker = KeyMaker()
    keys = [maker.make(name) for name in ("a b.jpg", "a_b.jpg", "a?b.jpg", "a?b.jpg")]
    assert keys[0] == "a_b" and len(set(keys)) == 4 and all(check_key(k) for k in keys)
    again = KeyMaker()
    assert [again.make(name) for name in ("a b.jpg", "a_b.jpg", "a?b.jpg", "a?b.jpg")] == keys


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["from-folder", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_usable_images_exits_1(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.jpg").write_bytes(image_bytes(16, 16))
    assert main(["from-folder", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 1
    assert "no sample could be written (skipped 1: missing_caption=1)" in capsys.readouterr().err
    assert read_manifest(tmp_path / "out")["splits"]["train"]["num_samples"] == 0
