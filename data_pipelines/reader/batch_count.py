"""How many batches a worker's share of an epoch can need, so every worker can be told to yield
the largest such number (equal steps) and bucketing can still use every sample exactly once.

A share with n_t samples of template t needs sum_t ceil(n_t / B) batches. The manifest's per-shard
aspect counts give n_t exactly for whole shards and a range for a shard cut by the share's
boundary; samples the counts leave out (a validated shard does not count the ones the reader will
skip) widen every template's range. The bound is the largest sum over those ranges; skipped
samples can only lower the need. Without aspect counts it falls back to n // B + (number of
templates): every full batch plus one partial batch per template.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from .samples import nearest_allowed_template
from .sources import Shard


def generic_batch_bound(samples: int, batch_size: int, templates: int) -> int:
    return min(samples, samples // batch_size + templates)


def template_counts(shard: Shard, templates: Sequence[float]) -> tuple[Counter[float], int] | None:
    """Samples per allowed template by the manifest, plus how many samples it leaves unassigned
    (e.g. ones a validator found unusable; they may land in any template or none); None if the
    counts are unknown or exceed the shard."""
    if not shard.aspect_counts or shard.num_samples is None:
        return None
    counts: Counter[float] = Counter()
    try:
        for key, count in shard.aspect_counts.items():
            counts[nearest_allowed_template(float(key), templates)] += int(count)
    except (TypeError, ValueError):
        return None
    unknown = shard.num_samples - sum(counts.values())
    return (counts, unknown) if unknown >= 0 else None


def share_batch_bound(pieces: Sequence[tuple[Shard, int]], batch_size: int, templates: Sequence[float]) -> int:
    """Most batches a share can need; ``pieces``: (shard, samples of it in the share)."""
    samples = sum(length for _, length in pieces)
    low: Counter[float] = Counter()
    high: Counter[float] = Counter()
    for shard, length in pieces:
        known = template_counts(shard, templates)
        if known is None:
            return generic_batch_bound(samples, batch_size, len(templates))
        counts, unknown = known
        for template in templates if unknown else counts:
            count = counts.get(template, 0)
            if length == shard.num_samples:
                low[template] += count
            high[template] += min(count + unknown, length)
    return _max_batches(low, high, samples, batch_size)


def _max_batches(low: Counter[float], high: Counter[float], samples: int, batch_size: int) -> int:
    """max sum_t ceil(n_t / B) over low_t <= n_t <= high_t with sum n_t = samples.

    Starting from n_t = low_t, one more batch for template t costs 1 sample if low_t is a multiple
    of B, else enough to fill its partial batch plus one; every later one costs B. Those costs are
    non-decreasing per template and every first cost is <= B, so taking the cheapest first is optimal.
    """
    base = sum(math.ceil(count / batch_size) for count in low.values())
    costs = []
    for template in high:
        room = high[template] - low[template]
        remainder = low[template] % batch_size
        cost = 1 if remainder == 0 else batch_size - remainder + 1
        while cost <= room:
            costs.append(cost)
            room -= cost
            cost = batch_size
    spare = samples - sum(low.values())
    extra = 0
    for cost in sorted(costs):
        if cost > spare:
            break
        spare -= cost
        extra += 1
    return min(samples, base + extra)
