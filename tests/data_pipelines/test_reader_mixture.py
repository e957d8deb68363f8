"""Resampled mode: a weighted mixture of sources matches its weights; steps are equal per rank."""

from __future__ import annotations

from collections import Counter

import pytest

from data_pipelines.reader import Source, build_reader
from data_pipelines.reader.example_shards import write_example_shards


@pytest.fixture(scope="module")
def source_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    for name, count in (("a", 40), ("b", 30), ("c", 20)):
        write_example_shards(root / name, count, 10, sizes=[(16, 16)], prefix=name, image_format="png")
    return root


def source_shares(batches) -> dict[str, float]:
    counts = Counter(key.split("-")[0] for batch in batches for key in batch["keys"])
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()}


@pytest.mark.parametrize(
    "weights", [{"a": 3.0, "b": 1.0}, {"a": 1.0, "b": 1.0, "c": 2.0}], ids=["3:1", "1:1:2"]
)
def test_mixture_matches_the_weights(source_dirs, weights):
    sources = [Source(str(source_dirs / name), weight) for name, weight in weights.items()]
    reader = build_reader(
        resolution=64, batch_size_per_rank=50, num_workers=0, resampled=True, sources=sources, steps_per_epoch=60, shuffle_buffer=50
    )
    batches = list(reader)
    assert len(batches) == 60
    shares = source_shares(batches)
    total_weight = sum(weights.values())
    for name, weight in weights.items():
        assert abs(shares[name] - weight / total_weight) < 0.05, shares
    assert set(shares) == set(weights)
    drawn = {k: v for k, v in reader.stats().items() if k.startswith("samples_from_source/")}
    assert sum(drawn.values()) >= 3000


def test_resampled_ranks_and_workers_yield_equal_steps_and_different_samples(source_dirs):
    sources = [(str(source_dirs / "a"), 1.0), {"shards": str(source_dirs / "b"), "weight": 1.0}]
    key_lists = []
    for rank in (0, 1):
        reader = build_reader(
            resolution=64, batch_size_per_rank=4, rank=rank, world_size=2, num_workers=2, resampled=True, sources=sources, steps_per_epoch=5
        )
        assert reader.steps_per_epoch == 6  # rounded up to a multiple of the workers
        batches = list(reader)
        assert len(batches) == 6 and all(len(b["keys"]) == 4 for b in batches)
        key_lists.append([b["keys"] for b in batches])
    assert key_lists[0] != key_lists[1]


def test_default_steps_cover_the_counted_samples_once(source_dirs):
    reader = build_reader(str(source_dirs / "a"), resolution=64, batch_size_per_rank=4, world_size=2, rank=0, num_workers=0, resampled=True)
    assert reader.steps_per_epoch == 40 // (2 * 4)


def test_mixture_settings_are_checked(source_dirs):
    with pytest.raises(ValueError, match="weights must be > 0"):
        build_reader(resolution=64, batch_size_per_rank=4, resampled=True, sources=[(str(source_dirs / "a"), 0.0)])
    with pytest.raises(ValueError, match="need resampled=True"):
        build_reader(str(source_dirs / "a"), resolution=64, batch_size_per_rank=4, sources=[(str(source_dirs / "a"), 1.0)])
