"""SIGUSR1 / SIGTERM (Slurm's preemption and time-limit warnings) ask the run to stop cleanly: the
current step finishes, a checkpoint is written and the process exits with the requeue status."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import torch

from infinity_train.distributed import all_reduce_sum

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            log.warning("received %s: stopping after this step to checkpoint and requeue", signal.Signals(signum).name)
        self.received = signum

    def any_rank_received(self, device: torch.device) -> bool:
        """True on every rank once any rank got a stop signal (a collective: call it on all ranks)."""
        flag = torch.tensor([1.0 if self.received is not None else 0.0], device=device)
        return bool(all_reduce_sum(flag).item() > 0)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
