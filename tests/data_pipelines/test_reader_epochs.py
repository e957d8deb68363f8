"""Epoch mode across ranks and workers: every sample once per epoch, equal steps, seeded order;
shard specifications (directory, brace pattern, pipe:); too few shards; resampled fallback."""

from __future__ import annotations

from collections import Counter

import pytest

from data_pipelines.reader import build_reader
from data_pipelines.reader.example_shards import write_example_shards
from reader_deadline import deadline

NUM_SAMPLES = 150
SIZES = [(48, 36), (36, 48), (40, 40), (64, 24)]  # h/w 0.75, 1.333, 1.0, 0.375 -> four templates


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("epoch_shards")
    write_example_shards(directory, NUM_SAMPLES, 12, sizes=SIZES)  # 13 shards, the last one short
    return directory


def read_epoch(shards, rank=0, world_size=1, num_workers=0, seed=3, epoch=0, **options):
    reader = build_reader(
        shards,
        resolution=64,
        batch_size_per_rank=4,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        seed=seed,
        shuffle_buffer=16,
        **options,
    )
    reader.set_epoch(epoch)
    with deadline(60):
        batches = [batch["keys"] for batch in reader]
    assert len(batches) == reader.steps_per_epoch
    return batches


def all_keys() -> list[str]:
    return [f"train-{i:06d}" for i in range(NUM_SAMPLES)]


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(shard_dir):
    orders = []
    for epoch in (0, 1):
        per_rank = [read_epoch(str(shard_dir), rank, 2, 2, epoch=epoch) for rank in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1])  # equal steps: no rank waits forever in DDP
        keys = [key for batches in per_rank for batch in batches for key in batch]
        assert Counter(keys) == Counter(all_keys())  # no overlap, no loss
        orders.append(keys)
    assert orders[0] != orders[1]


def test_order_is_fixed_by_the_seed(shard_dir):
    first = read_epoch(str(shard_dir), 1, 2, 2, seed=5)
    assert read_epoch(str(shard_dir), 1, 2, 2, seed=5) == first
    assert read_epoch(str(shard_dir), 1, 2, 2, seed=6) != first


def test_one_rank_without_workers_reads_everything(shard_dir):
    keys = [key for batch in read_epoch(str(shard_dir)) for key in batch]
    assert sorted(keys) == all_keys()


def test_brace_pattern_list_and_pipe_commands_read_the_same_batches(shard_dir):
    from_directory = read_epoch(str(shard_dir), 0, 2, 2)
    pattern = str(shard_dir / "train-{000000..000012}.tar")
    assert read_epoch(pattern, 0, 2, 2) == from_directory
    piped = [f"pipe:cat {shard_dir / f'train-{i:06d}.tar'}" for i in range(13)]
    assert read_epoch(piped, 0, 2, 2) == from_directory


def test_rank_and_world_size_come_from_the_environment_when_not_given(shard_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    reader = build_reader(str(shard_dir), resolution=64, batch_size_per_rank=4, num_workers=0)
    assert (reader.config.rank, reader.config.world_size) == (1, 2)
    explicit = build_reader(str(shard_dir), resolution=64, batch_size_per_rank=4, num_workers=0, rank=0, world_size=4)
    assert (explicit.config.rank, explicit.config.world_size) == (0, 4)


def test_fewer_shards_than_readers_is_refused_in_epoch_mode_and_works_resampled(tmp_path):
    write_example_shards(tmp_path, 18, 6)  # 3 shards for 2 ranks x 2 workers
    with pytest.raises(ValueError, match=r"2 x 2 = 4 readers, but .* only 3 shard"):
        build_reader(str(tmp_path), resolution=64, batch_size_per_rank=4, rank=0, world_size=2, num_workers=2)
    steps = []
    for rank in (0, 1):
        reader = build_reader(
            str(tmp_path), resolution=64, batch_size_per_rank=4, rank=rank, world_size=2, num_workers=2, resampled=True, steps_per_epoch=6
        )
        with deadline(60):
            batches = list(reader)
        assert all(len(b["keys"]) == 4 for b in batches)
        steps.append(len(batches))
    assert steps == [6, 6]


def test_remote_shards_take_their_counts_from_a_given_manifest(shard_dir):
    remote = ["pipe:curl -s https://example.invalid/data/train-000000.tar", "pipe:curl -s https://example.invalid/data/train-000001.tar"]
    with pytest.raises(ValueError, match="sample counts .* unknown"):
        build_reader(remote, resolution=64, batch_size_per_rank=4, num_workers=0)
    reader = build_reader(remote, resolution=64, batch_size_per_rank=4, num_workers=0, manifest=shard_dir / "manifest.json")
    assert sum(len(piece) for piece in reader.plan(0).slices) == 2
    assert reader.plan(0).samples_per_worker == (24,)


def test_two_ranks_two_workers_over_the_synthetic_shards_see_every_sample_once(tmp_path):
    from data_pipelines.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, 40, 64, aspect_ratios=(1.0, 0.5, 2.0), samples_per_shard=7, seed=2)  # 6 shards
    for epoch in (0, 1):
        per_rank = [read_epoch(str(tmp_path), rank, 2, 2, epoch=epoch, split="train") for rank in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1])
        keys = Counter(key for batches in per_rank for batch in batches for key in batch)
        assert keys == Counter(f"train-{i:08d}" for i in range(40))


def test_a_shard_damaged_during_the_run_is_survived_and_counted(tmp_path):
    write_example_shards(tmp_path, 48, 12)  # 4 shards for 2 workers
    reader = build_reader(str(tmp_path), resolution=64, batch_size_per_rank=4, num_workers=2, seed=1, shuffle_buffer=4)
    with deadline(60):
        first = [k for batch in reader for k in batch["keys"]]
    assert sorted(first) == [f"train-{i:06d}" for i in range(48)] and reader.stats()["skipped_total"] == 0
    damaged = tmp_path / "train-000002.tar"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 3])  # e.g. a copy job rewriting it
    with deadline(60):
        second = [batch["keys"] for batch in reader]
    assert len(second) == reader.steps_per_epoch  # the epoch still has every step
    keys = {k for batch in second for k in batch}
    assert {f"train-{i:06d}" for i in range(48) if not 24 <= i < 36} <= keys  # the other shards' samples all arrive
    stats = reader.stats()
    # the cut shard is counted once, under tar_error (the sample the cut went through is not a second skip)
    assert stats["epoch"] == 2 and stats["skipped/tar_error"] == 1 and stats["skipped_total"] == 1
