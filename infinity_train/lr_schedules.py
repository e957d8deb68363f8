"""Learning-rate schedules as a multiplier of the peak rate at each optimizer step.

``wsd`` (warmup, stable, decay) is the default for scaling sweeps: the stable phase does not depend
on the run's length, so one run's stable-phase checkpoints can start cooldown branches of any
shorter budget.
"""

from __future__ import annotations

import math

from infinity_train.config.schema import ScheduleConfig, ScheduleName


def cooldown_steps(schedule: ScheduleConfig) -> int:
    return round(schedule.decay_fraction * schedule.total_steps)


def lr_multiplier(step: int, schedule: ScheduleConfig) -> float:
    """Multiplier in [min_lr_ratio, 1] for the update made at 0-based ``step``."""
    total, warmup, floor = schedule.total_steps, schedule.warmup_steps, schedule.min_lr_ratio
    if step < warmup:
        return (step + 1) / warmup
    name = schedule.name
    if name == ScheduleName.constant:
        return 1.0
    if name == ScheduleName.wsd:
        decay = cooldown_steps(schedule)
        decay_start = total - decay
        if step < decay_start or decay == 0:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / decay)
        return floor + (1.0 - floor) * (1.0 - progress)
    progress = min(1.0, (step - warmup + 1) / max(1, total - warmup))
    if name == ScheduleName.linear:
        return floor + (1.0 - floor) * (1.0 - progress)
    if name == ScheduleName.cosine:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {name!r}")
