"""Find the worker processes torchrun started on this node: the direct children of the agent that
lead their own session (torchrun starts every worker with ``start_new_session=True``)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
    return [pid, *text.rsplit(")", 1)[1].split()]


def worker_pids(agent_pid: int | None = None) -> list[int]:
    agent = os.getpid() if agent_pid is None else agent_pid
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or len(fields) < 6:
            continue
        pid, ppid, session = int(fields[0]), int(fields[2]), int(fields[4])
        if ppid == agent and session == pid:
            found.append(pid)
    return sorted(found)
