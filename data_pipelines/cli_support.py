"""Shared pieces of the ``infinity-data`` subcommands: the usage error, the parser that raises it,
and progress reporting."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "infinity-data"


class UsageError(Exception):
    """A bad command line: reported as one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


class Progress:
    """Counts work done: a tqdm bar on an interactive terminal, else a log line every 10%
    (every ``unknown_total_every`` items when the total is unknown)."""

    def __init__(self, total: int | None, description: str, unknown_total_every: int = 1000) -> None:
        self.total, self.description, self.done = total, description, 0
        self._started = time.monotonic()
        self._next_report = 0.1
        self._every = unknown_total_every
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="sample", file=sys.stderr)

    def __call__(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        elapsed = time.monotonic() - self._started
        if self.total is None:
            if self.done % self._every < count:
                print(f"{self.description}: {self.done} done ({elapsed:.1f}s)", file=sys.stderr, flush=True)
            return
        fraction = self.done / self.total if self.total else 1.0
        if fraction >= self._next_report or self.done == self.total:
            print(f"{self.description}: {self.done}/{self.total} ({fraction:.0%}, {elapsed:.1f}s)", file=sys.stderr, flush=True)
            while self._next_report <= fraction:
                self._next_report += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def join_values(values: Sequence[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def parse_aspect_ratios(text: str, command: str) -> list[float]:
    """Comma-separated h/w templates, each checked; UsageError naming ``command`` otherwise."""
    from infinity_train.geometry import ASPECT_RATIOS, resolve_template

    ratios = []
    for item in text.split(","):
        try:
            ratios.append(resolve_template(float(item)))
        except ValueError:
            raise UsageError(
                f"{PROG} {command}: error: --aspect-ratios item {item.strip()!r} is not an aspect template; templates: {join_values(ASPECT_RATIOS)}"
            ) from None
    return ratios


def require_at_least(command: str, checks: Sequence[tuple[str, int | None, int]]) -> None:
    """UsageError for the first (flag, value, minimum) whose value is below its minimum (None passes)."""
    for flag, value, minimum in checks:
        if value is not None and value < minimum:
            raise UsageError(f"{PROG} {command}: error: {flag} must be >= {minimum}, got {value}")
