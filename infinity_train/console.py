"""Logging set-up and progress reporting: a progress bar for a person at a terminal, plain log lines
(at most one every few seconds) when output goes to a file or a scheduler's log."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
FORMAT = "%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"


def setup_logging(logs_dir: str | Path | None = None, rank: int = 0, level: int = logging.INFO) -> None:
    """Rank 0 logs to stderr at ``level``, other ranks only warnings; every rank also logs to
    ``logs_dir/rank{rank}.log`` when given."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_infinity_train", False):
            root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT.format(rank=rank), datefmt="%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(level if rank == 0 else logging.WARNING)
    if logs_dir is not None:
        Path(logs_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(logs_dir) / f"rank{rank}.log"))
        handlers[-1].setLevel(level)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._infinity_train = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def use_bar(mode: str = "auto") -> bool:
    if mode == "bar":
        return True
    if mode == "lines":
        return False
    return sys.stderr.isatty()


def progress(items: Iterable[T], total: int | None = None, desc: str = "", mode: str = "auto", every_s: float = 10.0) -> Iterator[T]:
    """Iterate ``items`` reporting progress: tqdm on a TTY, otherwise a log line every ``every_s``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if use_bar(mode):
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, dynamic_ncols=True)
        return
    logger = logging.getLogger("progress")
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s or done == total:
            last = now
            rate = done / max(now - start, 1e-9)
            of = f"/{total}" if total else ""
            logger.info("%s %d%s (%.1f/s)", desc, done, of, rate)
