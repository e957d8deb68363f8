"""build_cached_reader: the online and the cached path give the same training loss; the reader's
splitting, seeded order, resume and bad-data accounting hold for cached shards; what a cache
cannot serve is refused up front."""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter
from itertools import islice

import numpy as np
import pytest
import torch
from cache_world import RAW_SAMPLES, RESOLUTION

from data_pipelines.cache import build_cached_reader
from data_pipelines.cache.members import LATENT_MEMBER, TEXT_MEMBER, encode_tensors
from data_pipelines.reader import build_reader, to_model_range
from data_pipelines.shards import ShardWriter, expand_shards, iter_samples, read_manifest, split_entry, write_split_entry
from infinity_train.models import InfinityTransformer, bitwise_loss
from infinity_train.text.packed import pack_embeddings
from infinity_train.geometry import scale_schedule
from infinity_train.tokenizer import flatten_bits, teacher_forcing_inputs
from infinity_train.train.self_correction import bitwise_self_correction
from reader_deadline import deadline

SETTINGS = dict(resolution=RESOLUTION, batch_size_per_rank=4, seed=3, shuffle_buffer=8, short_caption_prob=0.5)


def tiny_transformer(text_dim: int) -> InfinityTransformer:
    torch.manual_seed(0)
    model = InfinityTransformer(64, 2, 2, 8, text_dim, 4, drop_path=0.0, cond_drop=0.0, attention="sdpa", text_pool_heads=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # O(1) random weights instead of the near-zero reference init, so text matters
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(param.shape[-1]))
        model.head.weight.mul_(0.25)
    return model.eval()


def loss_of(model, inputs, labels, text, schedule) -> float:
    with torch.no_grad():
        logits = model(inputs, text, schedule)
    return bitwise_loss(logits, labels, schedule).loss.item()


def test_cached_path_gives_the_online_loss(cache_world):
    tokenizer, text_encoder = cache_world.models.tokenizer, cache_world.models.text_encoder
    model = tiny_transformer(text_encoder.hidden_dim)
    online_reader = build_reader(str(cache_world.raw), num_workers=0, **SETTINGS)
    cached_reader = build_cached_reader(str(cache_world.cached), num_workers=0, **SETTINGS)
    raw_captions = {}
    for sample in iter_samples(expand_shards(cache_world.raw)):
        meta = json.loads(sample["json"])
        raw_captions[sample["__key__"]] = (meta["long_caption"], meta["text"])
    compared, short_used = 0, 0
    for online, cached in zip(online_reader, cached_reader, strict=True):
        assert online["keys"] == cached["keys"] and online["h_div_w"] == cached["h_div_w"]  # same order as the raw reader
        schedule = scale_schedule(RESOLUTION, cached["h_div_w"])
        with torch.no_grad():  # one image at a time, as the cache was written
            latent = torch.cat([tokenizer.encode(image[None]) for image in to_model_range(online["images"])])
        corrected = bitwise_self_correction(latent, schedule, max_strength=0.0)
        text = text_encoder.encode(cached["captions"])
        online_loss = loss_of(model, corrected.inputs, corrected.flat_labels, (text.tokens, text.cu_seqlens, text.max_seqlen), schedule)

        labels = flatten_bits(cached["bits"])
        assert torch.equal(labels, corrected.flat_labels)  # exact with max_strength 0
        assert torch.equal(teacher_forcing_inputs(cached["bits"], schedule), corrected.inputs)
        assert cached["latents"].dtype == torch.float32 and cached["latents"].shape == latent.shape
        torch.testing.assert_close(cached["latents"], latent, atol=1e-3, rtol=1e-3)  # stored as fp16
        cached_text = pack_embeddings(cached["text"])
        cached_loss = loss_of(model, teacher_forcing_inputs(cached["bits"], schedule), labels, cached_text, schedule)
        assert abs(cached_loss - online_loss) <= 1e-4 * online_loss, (cached_loss, online_loss)  # fp16 text: ~1e-6

        other = pack_embeddings(cached["text"][1:] + cached["text"][:1])  # the loss really depends on the text
        assert abs(loss_of(model, corrected.inputs, labels, other, schedule) - online_loss) > 20 * abs(cached_loss - online_loss)
        # the cached reader takes the short caption where the raw reader does, else the whole long one
        for key, raw_caption, cached_caption in zip(cached["keys"], online["captions"], cached["captions"]):
            long, short = raw_captions[key]
            assert cached_caption == (short if raw_caption == short else long)
            short_used += cached_caption == short
        compared += len(cached["keys"])
    assert compared == RAW_SAMPLES and 0 < short_used < RAW_SAMPLES


def test_bits_rederived_from_the_fp16_latent_mostly_agree(cache_world):
    """Self-correction re-derives labels from the cached F; fp16 rounding flips only near-zero residuals."""
    agree = total = 0
    for batch in build_cached_reader(str(cache_world.cached), num_workers=0, **SETTINGS):
        schedule = scale_schedule(RESOLUTION, batch["h_div_w"])
        rederived = bitwise_self_correction(batch["latents"], schedule, max_strength=0.0).flat_labels
        agree += (rederived == flatten_bits(batch["bits"])).sum().item()
        total += rederived.numel()
    assert agree / total > 0.99


def test_two_ranks_two_workers_see_every_cached_sample_once_per_epoch(cache_world):
    keys = Counter()
    steps = []
    for rank in (0, 1):
        reader = build_cached_reader(str(cache_world.cached), rank=rank, world_size=2, num_workers=2, **SETTINGS)
        with deadline(60):
            batches = list(reader)
        steps.append(len(batches))
        for batch in batches:
            assert len(batch["text"]) == len(batch["keys"]) == batch["latents"].shape[0] == batch["bits"][0].shape[0]
            assert all(t.shape[1] == 64 and t.dtype == torch.float32 for t in batch["text"])
            assert all(b.dtype == torch.bool for b in batch["bits"])
        keys.update(k for b in batches for k in b["keys"])
    assert steps[0] == steps[1]
    assert keys == Counter(f"train-{i:08d}" for i in range(RAW_SAMPLES))


def test_resampled_mixture_of_cached_sources(cache_world):
    sources = [(str(cache_world.cached / "train-{000000..000001}.tar"), 3.0), (str(cache_world.cached / "train-{000002..000003}.tar"), 1.0)]
    reader = build_cached_reader(rank=0, world_size=1, num_workers=2, resampled=True, sources=sources, steps_per_epoch=6, **SETTINGS)
    with deadline(60):
        batches = list(reader)
    assert len(batches) == 6 and all(len(b["keys"]) == 4 for b in batches)
    drawn = reader.stats()
    assert drawn["samples_from_source/0"] > drawn["samples_from_source/1"] > 0


def test_cached_reader_resumes_exactly(cache_world):
    def reader():
        return build_cached_reader(str(cache_world.cached), rank=0, world_size=1, num_workers=2, **SETTINGS)

    def read(r, count):
        out = []
        while len(out) < count:
            out += list(islice(iter(r), count - len(out)))
        return out

    steps = reader().steps_per_epoch
    expected = read(reader(), steps + 3)
    first = reader()
    head = read(first, 2)
    resumed = reader()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for got, want in zip(head + read(resumed, steps + 1), expected, strict=True):
        assert got["keys"] == want["keys"] and got["captions"] == want["captions"]
        assert torch.equal(got["latents"], want["latents"]) and all(torch.equal(a, b) for a, b in zip(got["text"], want["text"]))
    with pytest.raises(ValueError, match="sample_format"):  # a raw reader's state does not fit
        build_reader(str(cache_world.raw), rank=0, world_size=1, num_workers=2, **SETTINGS).load_state_dict(first.state_dict())


def test_what_a_cache_cannot_serve_is_refused(cache_world):
    with pytest.raises(ValueError, match="lists raw shards .* run `infinity-data cache`"):
        build_cached_reader(str(cache_world.raw), num_workers=0, **SETTINGS)
    with pytest.raises(ValueError, match="cached at resolution 64, not 128"):
        build_cached_reader(str(cache_world.cached), num_workers=0, **{**SETTINGS, "resolution": 128})
    with pytest.raises(ValueError, match=r"aspect templates \[0.5\] that aspect_ratios=\[1.0\] excludes"):
        build_cached_reader(str(cache_world.cached), num_workers=0, aspect_ratios=[1.0], **SETTINGS)


class Exploding:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_damaged_cached_samples_are_skipped_and_counted(cache_world, tmp_path):
    """A copy of shard 0 with damaged members mid-shard, read (also through pipe:) with shard 1."""
    marker = tmp_path / "unpickled"
    samples = [s for s in iter_samples(expand_shards(cache_world.cached)) if s["__shard__"] == "train-000000.tar"]
    damage = {
        1: ("bad_tensor", {LATENT_MEMBER: b"not safetensors"}),
        2: ("missing_tensor", {"drop": TEXT_MEMBER}),
        3: ("bad_tensor", {LATENT_MEMBER: encode_tensors({"latent": np.full((8, 2, 4), np.inf, np.float16)})}),
        4: ("cache_mismatch", {"json": {"schedule": [[1, 1], [2, 2], [3, 3]]}}),
    }
    with ShardWriter(tmp_path, "train", 100) as writer:
        for index, sample in enumerate(samples):
            files = {k: v for k, v in sample.items() if not k.startswith("__")}
            if index in damage:
                change = damage[index][1]
                if "drop" in change:
                    del files[change["drop"]]
                elif "json" in change:
                    files["json"] = json.dumps(json.loads(files["json"]) | change["json"]).encode()
                else:
                    files.update(change)
            files["pyd"] = pickle.dumps(Exploding(str(marker)))
            writer.write(sample["__key__"], files, h_div_w=json.loads(sample["json"])["h_div_w"])
    params = read_manifest(cache_world.cached)["splits"]["train"]["params"]
    write_split_entry(tmp_path, "train", split_entry("train", writer.shards, True, source="cache", params=params))
    shards = [f"pipe:cat {tmp_path / 'train-000000.tar'}", str(cache_world.cached / "train-000001.tar")]
    reader = build_cached_reader(shards, manifest=tmp_path / "manifest.json", num_workers=0, **SETTINGS)
    keys = [k for b in reader for k in b["keys"]]
    stats = reader.stats()
    assert Counter({k: v for k, v in stats.items() if k.startswith("skipped/")}) == Counter(
        {"skipped/bad_tensor": 2, "skipped/missing_tensor": 1, "skipped/cache_mismatch": 1}
    )
    damaged = {samples[i]["__key__"] for i in damage}
    assert len(keys) == len(set(keys)) and damaged.isdisjoint(keys) and len(keys) == 2 * len(samples) - len(damage)
    assert not marker.exists()
