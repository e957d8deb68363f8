"""The bucketer's promise, over random streams: exactly the planned number of batches, one
template each, never more than the batch size, and every sample once when none is rejected."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from data_pipelines.reader.bucketing import AspectBucketer
from data_pipelines.reader.batch_count import _max_batches, generic_batch_bound, share_batch_bound
from data_pipelines.reader.sources import Shard
from data_pipelines.reader.samples import Sample
from data_pipelines.reader.stats import ReaderCounters
from infinity_train.geometry import ASPECT_RATIOS


def sample(index: int, template: float) -> Sample:
    return Sample(f"k{index}", "shard.tar", b"", 1, 1, template, "Caption.", None, None)


def run(stream: list[Sample | None], batch_size: int, num_batches: int, expected: int) -> tuple[list, Counter]:
    counters = ReaderCounters()
    bucketer = AspectBucketer(batch_size, num_batches, expected, ASPECT_RATIOS, counters)
    plans = [plan for item in stream for plan in bucketer.add(item)] + bucketer.finish()
    return plans, counters.counts


@pytest.mark.parametrize("trial", range(40))
def test_random_streams_give_exactly_the_planned_batches_with_every_sample_once(trial):
    rng = random.Random(trial)
    batch_size = rng.choice([1, 2, 3, 4, 8, 16])
    templates = rng.sample(ASPECT_RATIOS, rng.randint(1, 6))
    n = rng.randint(1, 300)
    # Skewed streams too: runs of one template are the hard case for the tail.
    stream = sorted((sample(i, rng.choice(templates)) for i in range(n)), key=lambda s: s.template) if trial % 3 == 0 else [
        sample(i, rng.choice(templates)) for i in range(n)
    ]
    bound = generic_batch_bound(n, batch_size, len(templates))
    num_batches = bound + (rng.randint(0, 3) if trial % 2 else 0)  # other workers may need more
    num_batches = min(num_batches, n)
    plans, counts = run(stream, batch_size, num_batches, n)
    assert len(plans) == num_batches
    assert all(1 <= len(p.samples) <= batch_size and {s.template for s in p.samples} == {p.template} for p in plans)
    assert Counter(s.key for p in plans for s in p.samples) == Counter(s.key for s in stream)
    assert counts["padded_batches"] == counts["dropped_samples"] == counts["recropped_samples"] == 0


def test_rejected_samples_leave_fewer_samples_and_batches_are_repeated():
    stream = [sample(i, 1.0) for i in range(5)] + [None] * 20
    plans, counts = run(stream, batch_size=2, num_batches=8, expected=25)
    assert len(plans) == 8
    assert Counter(s.key for p in plans if not p.repeated for s in p.samples) == Counter(f"k{i}" for i in range(5))
    # Full batches went out while the rest of the stream looked fine; the tail then repeats batches.
    assert counts["padded_batches"] == sum(p.repeated for p in plans) == 5


def test_endless_stream_emits_only_full_batches():
    counters = ReaderCounters()
    bucketer = AspectBucketer(4, 5, None, ASPECT_RATIOS, counters)
    rng = random.Random(0)
    plans = []
    index = 0
    while not bucketer.done:
        plans += bucketer.add(sample(index, rng.choice([0.5, 1.0, 2.0])))
        index += 1
    assert len(plans) == 5 and all(len(p.samples) == 4 for p in plans)
    assert bucketer.finish() == []


def test_too_few_planned_batches_recrop_leftovers_into_a_near_template_instead_of_dropping():
    # A manifest that hid a template: 3 leftovers of 0.5 and 1 of 0.571 but only one batch owed.
    stream = [sample(0, 0.5), sample(1, 0.5), sample(2, 0.571), sample(3, 0.5)]
    plans, counts = run(stream, batch_size=4, num_batches=1, expected=4)
    assert [(p.template, len(p.samples)) for p in plans] == [(0.5, 4)]
    assert counts["recropped_samples"] == 1 and counts["dropped_samples"] == 0


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_batch_bound_is_the_largest_need_over_every_split_of_the_cut_shards(batch_size):
    rng = random.Random(batch_size)
    for _ in range(30):
        templates = rng.sample(ASPECT_RATIOS, 3)
        low = {t: rng.randint(0, 7) for t in templates}
        high = {t: low[t] + rng.randint(0, 6) for t in templates}
        samples = rng.randint(sum(low.values()), sum(high.values()))
        best = 0
        for a in range(low[templates[0]], high[templates[0]] + 1):
            for b in range(low[templates[1]], high[templates[1]] + 1):
                c = samples - a - b
                if low[templates[2]] <= c <= high[templates[2]]:
                    best = max(best, sum(-(-x // batch_size) for x in (a, b, c)))
        assert _max_batches(Counter(low), Counter(high), samples, batch_size) == best


def test_batch_bound_uses_manifest_aspect_counts():
    whole = Shard("a.tar", 10, {"1.0": 6, "0.5": 4})
    assert share_batch_bound([(whole, 10)], 4, ASPECT_RATIOS) == 2 + 1  # exact: ceil(6/4) + ceil(4/4)
    assert share_batch_bound([(whole, 10), (Shard("b.tar", 8, {"1.0": 8}), 3)], 4, ASPECT_RATIOS) == 3 + 1  # ceil(9/4) + 1
    assert share_batch_bound([(Shard("c.tar", 10), 10)], 4, ASPECT_RATIOS) == min(10, 10 // 4 + 15)
