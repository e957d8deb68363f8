"""The offline cache job: raw image-text shards -> shards of tokenizer latents, bits and caption
embeddings (members: see ``members``), plus their manifest entry.

Raw shard i becomes cached shard ``{prefix}-{i:06d}.tar`` holding its usable samples in the same
order, so a cached reader with the same seed walks the samples in the raw reader's order.
Images go through the reader's own checks and its decode-and-resize to the template size of
``resolution``; the tokenizer encodes them (fp32, no grad) to F and the bits of the template's
schedule. Both captions are embedded: the long one whole, the short one when it differs (the
cached reader picks between them per epoch). Unusable samples are skipped and counted with the
reader's skip reasons. The job resumes after the last finished shard when re-run with the same
inputs and settings; other settings need ``overwrite``. Same inputs, device and batch size give
the same bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence as _Sequence

import numpy as np
import torch

from data_pipelines.reader.config import resolve_templates
from data_pipelines.reader.images import decode_to_size, to_unit_range
from data_pipelines.reader.samples import Sample, prepare_sample
from data_pipelines.reader.sources import ShardSpec, local_path, resolve_shards, shard_name
from data_pipelines.reader.stats import ReaderCounters, with_skip_total
from data_pipelines.reader.tar_stream import iter_shard_samples
from data_pipelines.shards import (
    ShardInfo,
    ShardWriter,
    check_key,
    file_sha256,
    finished_shards,
    listed_shards,
    names_pattern,
    read_manifest,
    split_entry,
    write_split_entry,
)
from infinity_train.geometry import num_scales, pixel_size, scale_schedule

from .members import CACHE_VERSION, cached_sample_files

WINDOW_BATCHES = 16  # samples are processed in windows of this many batches, so memory stays bounded


class CacheTokenizer(Protocol):
    """What caching needs of a tokenizer (``infinity_train.tokenizer.BitwiseTokenizer`` is one)."""

    architecture: dict[str, Any]
    token_dim: int

    def to(self, device: Any) -> "CacheTokenizer": ...
    def eval(self) -> "CacheTokenizer": ...
    def encode(self, image: torch.Tensor) -> torch.Tensor: ...
    def latent_to_bits(self, latent: torch.Tensor, schedule: Any) -> list[torch.Tensor]: ...


class CacheTextEncoder(Protocol):
    """What caching needs of a text encoder (``infinity_train.text.TextEncoder`` is one)."""

    name: str
    max_length: int
    hidden_dim: int

    def to(self, device: Any) -> "CacheTextEncoder": ...
    def encode(self, captions: _Sequence[str], batch_size: int = ...) -> Any: ...


@dataclass
class CacheModels:
    """The frozen models and what identifies them in the manifest (a re-run must match it to resume).
    Caching takes them as protocols, so this package does not import the model code that builds them
    (``infinity-data cache`` loads them in ``infinity_train.cache_command``)."""

    tokenizer: CacheTokenizer
    text_encoder: CacheTextEncoder
    tokenizer_id: dict[str, Any]
    text_encoder_id: dict[str, Any]

    @classmethod
    def identified(
        cls, tokenizer: CacheTokenizer, text_encoder: CacheTextEncoder, checkpoint: str | os.PathLike | None = None, text_encoder_path: str | None = None
    ) -> "CacheModels":
        """Models with their manifest identity: the tokenizer's architecture (plus the checkpoint's
        name and sha256) and the text encoder's name, path, length limit and width."""
        tokenizer_id: dict[str, Any] = {**tokenizer.architecture, "token_dim": tokenizer.token_dim}
        if checkpoint is not None:
            tokenizer_id |= {"checkpoint": Path(checkpoint).name, "sha256": file_sha256(Path(checkpoint))}
        text_id = {
            "name": text_encoder.name,
            "path": text_encoder_path,
            "max_length": text_encoder.max_length,
            "hidden_dim": text_encoder.hidden_dim,
        }
        return cls(tokenizer, text_encoder, tokenizer_id, text_id)


@dataclass
class CacheReport:
    directory: Path
    prefix: str
    shards: list[ShardInfo] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    shards_kept: int = 0  # finished by an earlier run

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    def summary(self) -> dict[str, Any]:
        counts = with_skip_total(self.counts)
        return {
            "shards": len(self.shards),
            "shards_kept": self.shards_kept,
            "samples": self.num_samples,
            "skipped_total": counts["skipped_total"],
            "skipped": {k.removeprefix("skipped/"): v for k, v in sorted(counts.items()) if k.startswith("skipped/")},
        }


def write_cache(
    shards: ShardSpec,
    out_dir: str | os.PathLike,
    models: CacheModels,
    *,
    resolution: int,
    aspect_ratios: Sequence[float] | None = None,
    split: str | None = None,
    prefix: str = "train",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    log_first: int = 5,
    log_every: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> CacheReport:
    num_scales(resolution)
    check_key(prefix)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    templates = resolve_templates(aspect_ratios)
    sources = resolve_shards(shards, split=split)
    params = _normalized(
        {
            "cache_version": CACHE_VERSION,
            "resolution": resolution,
            "aspect_ratios": list(templates),
            "tokenizer": models.tokenizer_id,
            "text_encoder": models.text_encoder_id,
            "source_shards": [shard_name(s.url) for s in sources],
        }
    )
    directory = Path(out_dir)
    _refuse_input_directory(directory, sources)
    directory.mkdir(parents=True, exist_ok=True)
    report = CacheReport(directory, prefix)
    done = _resume(directory, prefix, params, overwrite, report)
    encoder = _Encoder(models, resolution, batch_size, torch.device(device))

    def record(complete: bool) -> None:
        entry = split_entry(prefix, report.shards, complete, source="cache", params=params, sources_done=done, counts=dict(report.counts))
        entry["pattern"] = names_pattern([s.name for s in report.shards])  # a raw shard without usable samples leaves a gap
        write_split_entry(directory, prefix, entry)

    record(complete=done == len(sources))
    for index in range(done, len(sources)):
        source = sources[index]
        counters = ReaderCounters(log_first, log_every, context=f"cache {shard_name(source.url)}: ")
        with ShardWriter(directory, prefix, samples_per_shard=1 << 62, first_shard=index) as writer:
            for window in _windows(source.url, source.num_samples, templates, resolution, batch_size * WINDOW_BATCHES, counters, progress):
                for key, files, template in encoder.cached_files(window, source.url, counters):
                    writer.write(key, files, h_div_w=template)
        report.shards += writer.shards
        report.counts.update(counters.snapshot())
        done = index + 1
        record(complete=done == len(sources))
    return report


def _refuse_input_directory(directory: Path, sources: Sequence[Any]) -> None:
    """Cached shards are named like raw ones: written into the raw directory they would replace them."""
    inputs = {p.parent.resolve() for p in (local_path(s.url) for s in sources) if p is not None}
    if directory.resolve() in inputs:
        raise ValueError(f"the cache must go to another directory than its raw shards ({directory})")


def _normalized(params: dict[str, Any]) -> dict[str, Any]:
    """As it reads back from the manifest (tuples become lists), so a re-run compares equal."""
    return json.loads(json.dumps(params))


def _resume(directory: Path, prefix: str, params: dict[str, Any], overwrite: bool, report: CacheReport) -> int:
    """Raw shards already cached by an earlier run with the same params (0 for a fresh start)."""
    entry = read_manifest(directory)["splits"].get(prefix)
    if entry is None:
        return 0
    same = entry.get("source") == "cache" and entry.get("params") == params
    if same and not overwrite:
        kept = finished_shards(directory, prefix, source="cache", params=params)
        if len(kept) == len(entry["shards"]):
            report.shards, report.shards_kept = kept, len(kept)
            report.counts.update(entry.get("counts", {}))
            return int(entry.get("sources_done", 0))
    elif not overwrite:
        raise FileExistsError(
            f"{directory} already has a split {prefix!r} made from other shards or settings; pass overwrite (--overwrite) to replace it"
        )
    for name in listed_shards(directory, prefix):
        (directory / name).unlink(missing_ok=True)
    return 0


@dataclass
class _Decoded:
    sample: Sample
    pixels: np.ndarray  # uint8 (H, W, 3) at the template's size


def _windows(
    url: str,
    num_samples: int | None,
    templates: Sequence[float],
    resolution: int,
    window: int,
    counters: ReaderCounters,
    progress: Callable[[int], None] | None,
):
    """The shard's usable samples, decoded, in order, in lists of at most ``window``."""
    pending: list[_Decoded] = []
    for raw in iter_shard_samples(url, counters, stop=num_samples):
        counters.add("samples_read")
        if progress is not None:
            progress(1)
        sample = prepare_sample(raw, templates, counters)
        if sample is None:
            continue
        where = f"{url} sample {sample.key!r}"
        try:
            check_key(sample.key)
        except ValueError as error:
            counters.skip("unsafe_key", where, error)
            continue
        try:
            pixels = decode_to_size(sample.image, pixel_size(resolution, sample.template))
        except Exception as error:  # noqa: BLE001 - Pillow raises many types for damaged data
            counters.skip("image_decode_error", where, error)
            continue
        pending.append(_Decoded(sample, pixels))
        if len(pending) >= window:
            yield pending
            pending = []
    if pending:
        yield pending


class _Encoder:
    """Runs the frozen models over a window: images by template in batches, captions in batches."""

    def __init__(self, models: CacheModels, resolution: int, batch_size: int, device: torch.device) -> None:
        self.tokenizer = models.tokenizer.to(device).eval()
        self.text_encoder = models.text_encoder.to(device)
        self.resolution, self.batch_size, self.device = resolution, batch_size, device

    @torch.no_grad()
    def cached_files(self, window: list[_Decoded], url: str, counters: ReaderCounters):
        """(key, members, template) of every sample of the window whose tensors are finite, in order."""
        latents, bits = self._encode_images(window)
        texts = self._encode_captions([d.sample for d in window])
        for index, item in enumerate(window):
            sample = item.sample
            with np.errstate(over="ignore"):  # overflow becomes inf, caught just below
                latent = latents[index].astype(np.float16)
                text_long, text_short = (None if t is None else t.astype(np.float16) for t in texts[index])
            if not (np.isfinite(latent).all() and np.isfinite(text_long).all() and (text_short is None or np.isfinite(text_short).all())):
                counters.skip("bad_tensor", f"{url} sample {sample.key!r}", "latent or text overflows float16")
                continue
            files = cached_sample_files(
                long_caption=sample.long_caption,
                short_caption=sample.short_caption,
                template=sample.template,
                schedule=scale_schedule(self.resolution, sample.template),
                latent=latent,
                bits=bits[index],
                text_long=text_long,
                text_short=text_short,
                spec=sample.spec,
                source={"shard": shard_name(url), "key": sample.key},
            )
            yield sample.key, files, sample.template

    def _encode_images(self, window: list[_Decoded]) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        latents: list[Any] = [None] * len(window)
        bits: list[Any] = [None] * len(window)
        by_template: dict[float, list[int]] = {}
        for index, item in enumerate(window):
            by_template.setdefault(item.sample.template, []).append(index)
        for template, indices in sorted(by_template.items()):
            schedule = scale_schedule(self.resolution, template)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                images = to_unit_range([window[i].pixels for i in chunk]).to(self.device)
                latent = self.tokenizer.encode(images).float()
                scales = [b.cpu().numpy() for b in self.tokenizer.latent_to_bits(latent, schedule)]
                latent = latent.cpu().numpy()
                for row, i in enumerate(chunk):
                    latents[i] = latent[row]
                    bits[i] = [scale[row] for scale in scales]
        return latents, bits

    def _encode_captions(self, samples: list[Sample]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        captions: list[str] = []
        slots: list[tuple[int, int | None]] = []
        for sample in samples:
            long_slot = len(captions)
            captions.append(sample.long_caption)
            short_slot = None
            if sample.short_caption and sample.short_caption != sample.long_caption:
                short_slot = len(captions)
                captions.append(sample.short_caption)
            slots.append((long_slot, short_slot))
        packed = self.text_encoder.encode(captions, batch_size=self.batch_size)
        tokens = [t.float().cpu().numpy() for t in packed.split()]
        return [(tokens[long], None if short is None else tokens[short]) for long, short in slots]
