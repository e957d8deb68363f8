"""The cache job: per-sample latents (fp16), bits of the template's schedule (packed) and caption
embeddings (fp16) in safetensors members; deterministic; resumable; bad input skipped and counted."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from data_pipelines.cache import write_cache
from data_pipelines.cache.members import BITS_MEMBER, LATENT_MEMBER, TEXT_MEMBER, decode_tensors, pack_bits, unpack_bits
from infinity_train.data_cli import main
from data_pipelines.reader.example_shards import encode, photo_like_image
from data_pipelines.reader.images import decode_to_size, to_unit_range
from data_pipelines.shards import expand_shards, iter_samples, read_manifest
from infinity_train.geometry import pixel_size, scale_schedule

from cache_world import RAW_SAMPLES, RESOLUTION


def shard_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tar"))}


def test_members_hold_the_tokenizer_and_text_encoder_outputs(cache_world):
    raw = {s["__key__"]: s for s in iter_samples(expand_shards(cache_world.raw))}
    cached = list(iter_samples(expand_shards(cache_world.cached)))
    assert [s["__key__"] for s in cached] == sorted(raw)  # every sample, in the raw order
    tokenizer, text_encoder = cache_world.models.tokenizer, cache_world.models.text_encoder
    for sample in cached[:4]:
        meta = json.loads(sample["json"])
        raw_meta = json.loads(raw[sample["__key__"]]["json"])
        template = meta["h_div_w"]
        schedule = scale_schedule(RESOLUTION, template)
        assert (meta["long_caption"], meta["text"]) == (raw_meta["long_caption"], raw_meta["text"])
        assert meta["schedule"] == [list(g) for g in schedule] and meta["spec"] == raw_meta["spec"]
        assert meta["source"] == {"shard": sample["__shard__"], "key": sample["__key__"]}

        pixels = decode_to_size(raw[sample["__key__"]]["png"], pixel_size(RESOLUTION, template))
        with torch.no_grad():
            latent = tokenizer.encode(to_unit_range([pixels]))
        bits = [b[0].numpy() for b in tokenizer.latent_to_bits(latent, schedule)]
        stored_latent = decode_tensors(sample[LATENT_MEMBER])["latent"]
        assert stored_latent.dtype == np.float16 and stored_latent.shape == tuple(meta["latent_shape"]) == tuple(latent.shape[1:])
        np.testing.assert_allclose(stored_latent.astype(np.float32), latent[0].numpy(), atol=1e-3, rtol=1e-3)
        stored_bits = unpack_bits(decode_tensors(sample[BITS_MEMBER])["bits"], meta["bits_shapes"])
        assert all(np.array_equal(s, b) for s, b in zip(stored_bits, bits))

        texts = decode_tensors(sample[TEXT_MEMBER])
        expected = text_encoder.encode([meta["long_caption"], meta["text"]]).split()
        assert set(texts) == {"long", "short"} and meta["text_dim"] == 64
        for name, want in zip(("long", "short"), expected):
            assert texts[name].dtype == np.float16
            np.testing.assert_allclose(texts[name].astype(np.float32), want.numpy(), atol=2e-3, rtol=2e-3)


def test_packed_bits_round_trip():
    rng = np.random.default_rng(0)
    scales = [rng.random(shape) < 0.5 for shape in ((1, 1, 8), (2, 2, 8), (3, 5, 8))]
    packed = pack_bits(scales)
    assert packed.dtype == np.uint8 and packed.shape == (-(-(8 + 32 + 120) // 8),)
    assert all(np.array_equal(a, b) for a, b in zip(unpack_bits(packed, [s.shape for s in scales]), scales))


def test_same_inputs_same_bytes_and_the_manifest_records_the_settings(cache_world, tmp_path):
    write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, batch_size=1)
    assert shard_bytes(tmp_path) == shard_bytes(cache_world.cached)
    entry = read_manifest(tmp_path)["splits"]["train"]
    assert entry["complete"] and entry["source"] == "cache" and entry["num_samples"] == RAW_SAMPLES
    assert [s["name"] for s in entry["shards"]] == [f"train-{i:06d}.tar" for i in range(4)]
    params = entry["params"]
    assert params["resolution"] == RESOLUTION and params["tokenizer"]["d"] == 8 and params["tokenizer"]["token_dim"] == 8
    assert params["tokenizer"]["checkpoint"] == "tokenizer.safetensors" and len(params["tokenizer"]["sha256"]) == 64
    assert params["text_encoder"] == {"name": "tiny-t5", "path": None, "max_length": 64, "hidden_dim": 64}
    assert entry["aspect_ratios"] == {"0.5": 12, "1.0": 12}


def test_an_interrupted_job_resumes_to_the_same_bytes(cache_world, tmp_path):
    class Stop(Exception):
        pass

    seen = []

    def stop_in_the_third_shard(count):
        seen.append(count)
        if len(seen) == 14:
            raise Stop

    with pytest.raises(Stop):
        write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, batch_size=1, progress=stop_in_the_third_shard)
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["train-000000.tar", "train-000001.tar"]
    assert not read_manifest(tmp_path)["splits"]["train"]["complete"]
    report = write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, batch_size=1)
    assert report.shards_kept == 2 and report.num_samples == RAW_SAMPLES
    assert shard_bytes(tmp_path) == shard_bytes(cache_world.cached)
    assert write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, batch_size=1).shards_kept == 4

    with pytest.raises(FileExistsError, match="other shards or settings"):
        write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, aspect_ratios=[1.0], batch_size=1)
    replaced = write_cache(cache_world.raw, tmp_path, cache_world.models, resolution=RESOLUTION, aspect_ratios=[1.0], overwrite=True)
    assert replaced.shards_kept == 0 and read_manifest(tmp_path)["splits"]["train"]["aspect_ratios"] == {"1.0": 24}


def test_bad_raw_samples_are_skipped_and_counted(cache_world, tmp_path):
    good = encode(photo_like_image(np.random.default_rng(0), 64, 64), "png")

    def caption(text):
        return json.dumps({"long_caption": text, "text": None}).encode()

    members = [
        ("fine-1.png", good), ("fine-1.json", caption("A fine image.")),
        ("no-caption.png", good), ("no-caption.json", b"{}"),
        ("not-an-image.png", b"nope" * 50), ("not-an-image.json", caption("x")),
        ("a b.png", good), ("a b.json", caption("a key with a space")),
        ("fine-2.png", good), ("fine-2.json", caption("Another fine image.")), ("fine-2.pickle", b"\x80\x04K\x01."),
    ]
    (tmp_path / "raw").mkdir()
    with tarfile.open(tmp_path / "raw" / "train-000000.tar", "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = write_cache(tmp_path / "raw", tmp_path / "cached", cache_world.models, resolution=RESOLUTION)
    assert report.summary()["skipped"] == {"missing_caption": 1, "bad_image": 1, "unsafe_key": 1}
    samples = list(iter_samples(expand_shards(tmp_path / "cached")))
    assert [s["__key__"] for s in samples] == ["fine-1", "fine-2"]
    assert all(set(s) == {"__key__", "__shard__", "json", TEXT_MEMBER, LATENT_MEMBER, BITS_MEMBER} for s in samples)
    assert json.loads(samples[0]["json"])["text"] is None and set(decode_tensors(samples[0][TEXT_MEMBER])) == {"long"}
    with pytest.raises(ValueError, match="another directory than its raw shards"):
        write_cache(tmp_path / "raw", tmp_path / "raw", cache_world.models, resolution=RESOLUTION)


def test_cache_command(cache_world, tmp_path, capsys):
    args = ["cache", "--shards", str(cache_world.raw), "--out", str(tmp_path), "--tokenizer", str(cache_world.tokenizer_path),
            "--resolution", str(RESOLUTION), "--text-encoder", "tiny-t5", "--batch-size", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"train: {RAW_SAMPLES} cached samples in 4 shards")
    assert json.loads(out[-1])["samples"] == RAW_SAMPLES
    assert shard_bytes(tmp_path) == shard_bytes(cache_world.cached)
    for extra, message in (
        (["--resolution", "100"], "--resolution 100 is not supported"),
        (["--aspect-ratios", "0.9"], "'0.9' is not an aspect template"),
        (["--tokenizer", str(tmp_path / "missing.safetensors")], "is not a file"),
        (["--text-encoder", "no-such-encoder"], "unknown text encoder 'no-such-encoder'"),
        (["--aspect-ratios", "1.0"], "other shards or settings; pass overwrite"),
    ):
        assert main(args + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
