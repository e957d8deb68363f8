"""Start daemons in the foreground of their own session, remember their PIDs, and stop exactly those."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Daemon:
    name: str
    pid: int
    executable: str  # argv[0], checked before signalling so a reused PID is never hit


def start_daemon(name: str, argv: list[str], log_path: Path, env: dict[str, str], user: str | None = None) -> Daemon:
    """Start ``argv`` detached from our terminal; its output goes to ``log_path``."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, user=user, start_new_session=True
        )
    return Daemon(name, process.pid, argv[0])


def is_running(daemon: Daemon) -> bool:
    """True while the PID is alive, is not a zombie, and still runs the executable we started."""
    try:
        cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        state = Path(f"/proc/{daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and os.path.basename(cmdline) == os.path.basename(daemon.executable)


def _reap(pid: int) -> None:
    """Collect the exit status when the daemon is our own child (no-op otherwise)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_daemon(daemon: Daemon, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; only if the PID still belongs to that daemon."""
    if not is_running(daemon):
        _reap(daemon.pid)
        return
    os.kill(daemon.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(daemon.pid)
        if not is_running(daemon):
            return
        time.sleep(0.1)
    os.kill(daemon.pid, signal.SIGKILL)
    _reap(daemon.pid)


def save_daemons(path: Path, daemons: list[Daemon]) -> None:
    path.write_text(json.dumps([asdict(d) for d in daemons], indent=2) + "\n")


def load_daemons(path: Path) -> list[Daemon]:
    if not path.exists():
        return []
    return [Daemon(**entry) for entry in json.loads(path.read_text())]
