"""Aggregating checker results over many images into GenEval-style accuracies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .checker import CRITERIA

SUMMARY_KEYS: tuple[str, ...] = CRITERIA + ("overall",)


@dataclass
class CheckerTally:
    """Running per-criterion pass counts, overall and per scene kind."""

    passed: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    applicable: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    kind_passed: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    kind_total: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, result: dict[str, Any], kind: str) -> None:
        for key in SUMMARY_KEYS:
            if result.get(key) is not None:
                self.passed[key] += result[key]
                self.applicable[key] += 1
        self.kind_passed[kind] += result["overall"]
        self.kind_total[kind] += 1

    @property
    def num_images(self) -> int:
        return self.applicable["overall"]

    def accuracy(self) -> dict[str, float | None]:
        """Mean score per criterion over the images where it applies (None if it never did)."""
        return {k: (self.passed[k] / self.applicable[k] if self.applicable[k] else None) for k in SUMMARY_KEYS}

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.num_images,
            "accuracy": self.accuracy(),
            "applicable": {k: self.applicable[k] for k in SUMMARY_KEYS},
            "overall_by_kind": {k: self.kind_passed[k] / self.kind_total[k] for k in sorted(self.kind_total)},
            "images_by_kind": {k: self.kind_total[k] for k in sorted(self.kind_total)},
        }

    def table(self) -> str:
        """Plain-text table: criterion, images judged, accuracy; then overall accuracy per scene kind."""
        rows = [("criterion", "images", "accuracy")]
        for key, value in self.accuracy().items():
            rows.append((key, str(self.applicable[key]), "-" if value is None else f"{value:.4f}"))
        for kind in sorted(self.kind_total):
            rows.append((f"overall[{kind}]", str(self.kind_total[kind]), f"{self.kind_passed[kind] / self.kind_total[kind]:.4f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows)
