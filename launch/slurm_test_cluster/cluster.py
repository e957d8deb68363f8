"""A real Slurm cluster of emulated nodes on this machine, for tests: munged (as the munge user), one
slurmctld and one ``slurmd -N <name>`` per node, everything under one folder, stopped by the PIDs it
started. Needs root and the slurm-wlm and munge packages."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from launch.slurm_test_cluster.daemons import Daemon, is_running, load_daemons, save_daemons, start_daemon, stop_daemon
from launch.slurm_test_cluster.slurm_conf import (
    ClusterLayout,
    NodeSpec,
    layout_from_json,
    layout_to_json,
    render_slurm_conf,
)

START_TIMEOUT_S = 60.0
LAYOUT_FILE = "layout.json"


class ClusterError(RuntimeError):
    pass


def free_ports(count: int) -> list[int]:
    """Distinct ports nobody listens on right now (all emulated nodes share one network namespace)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def plan_layout(root: Path, num_nodes: int = 2) -> ClusterLayout:
    ports = free_ports(num_nodes + 1)
    cpus = os.cpu_count() or 1
    memory = max(512, _memory_mb() // num_nodes)
    nodes = tuple(NodeSpec(f"n{i + 1}", ports[i + 1], cpus, memory) for i in range(num_nodes))
    return ClusterLayout(root=root, controller_port=ports[0], nodes=nodes)


def _wait_until(condition: Callable[[], bool], what: str, log: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}; {log}:\n{tail}")


class TestCluster:
    """``TestCluster.create()`` writes the configuration; ``start()`` and ``stop()`` run the daemons."""

    __test__ = False  # not a pytest test class

    def __init__(self, layout: ClusterLayout):
        self.layout = layout

    @classmethod
    def create(cls, root: Path | None = None, num_nodes: int = 2) -> "TestCluster":
        root = Path(tempfile.mkdtemp(prefix="infinity-slurm-")) if root is None else root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # munged, running as munge, must reach its socket below
        cluster = cls(plan_layout(root.resolve(), num_nodes))
        cluster._write_files()
        return cluster

    @classmethod
    def from_root(cls, root: Path) -> "TestCluster":
        """The cluster whose folder is ``root`` (to stop or inspect it from another process)."""
        layout_file = root.resolve() / LAYOUT_FILE
        if not layout_file.exists():
            raise ClusterError(f"{root} holds no test cluster (no {LAYOUT_FILE})")
        return cls(layout_from_json(layout_file.read_text()))

    @property
    def env(self) -> dict[str, str]:
        """The environment Slurm commands (sbatch, squeue, ...) need to talk to this cluster."""
        return dict(os.environ, SLURM_CONF=str(self.layout.conf_path))

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.layout.nodes]

    def _write_files(self) -> None:
        layout = self.layout
        munge = pwd.getpwnam("munge")
        for folder in (layout.state_dir, layout.spool_dir, layout.log_dir, layout.munge_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for node in layout.nodes:
            (layout.spool_dir / node.name).mkdir(exist_ok=True)
        layout.munge_dir.chmod(0o755)
        os.chown(layout.munge_dir, munge.pw_uid, munge.pw_gid)
        layout.munge_key.write_bytes(os.urandom(1024))
        layout.munge_key.chmod(0o600)
        os.chown(layout.munge_key, munge.pw_uid, munge.pw_gid)
        layout.conf_path.write_text(render_slurm_conf(layout))
        (layout.root / LAYOUT_FILE).write_text(layout_to_json(layout))

    def _munged_argv(self) -> list[str]:
        munge_dir = self.layout.munge_dir
        return [
            shutil.which("munged") or "munged",
            "--foreground",
            f"--socket={self.layout.munge_socket}",
            f"--key-file={self.layout.munge_key}",
            f"--log-file={munge_dir / 'munged.log'}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ]

    def _run(self, *argv: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def _controller_up(self) -> bool:
        return self._run("scontrol", "ping").stdout.count("is UP") > 0

    def node_states(self) -> dict[str, str]:
        result = self._run("sinfo", "--noheader", "--Node", "--format=%N %T")
        states = {}
        for line in result.stdout.splitlines():
            if line.strip():
                name, state = line.split()
                states[name] = state
        return states

    def _nodes_idle(self) -> bool:
        states = self.node_states()
        return all(states.get(name, "").rstrip("*") == "idle" for name in self.node_names)

    def start(self) -> None:
        """Start munged, slurmctld and every slurmd, and wait until sinfo shows all nodes idle."""
        layout = self.layout
        daemons: list[Daemon] = []
        try:
            daemons.append(start_daemon("munged", self._munged_argv(), layout.log_dir / "munged.out", self.env, user="munge"))
            _wait_until(layout.munge_socket.exists, "munged's socket", layout.log_dir / "munged.out")
            conf = str(layout.conf_path)
            ctld = [shutil.which("slurmctld") or "slurmctld", "-D", "-i", "-f", conf]
            daemons.append(start_daemon("slurmctld", ctld, layout.log_dir / "slurmctld.out", self.env))
            _wait_until(self._controller_up, "slurmctld to answer scontrol ping", layout.log_dir / "slurmctld.log")
            for node in layout.nodes:
                slurmd = [shutil.which("slurmd") or "slurmd", "-D", "-N", node.name, "-f", conf]
                daemons.append(start_daemon(f"slurmd-{node.name}", slurmd, layout.log_dir / f"slurmd-{node.name}.out", self.env))
            save_daemons(layout.pid_file, daemons)
            _wait_until(self._nodes_idle, f"nodes {', '.join(self.node_names)} to be idle", layout.log_dir / "slurmctld.log")
        except BaseException:
            save_daemons(layout.pid_file, daemons)
            self.stop()
            raise
        dead = [d.name for d in daemons if not is_running(d)]
        if dead:
            self.stop()
            raise ClusterError(f"{', '.join(dead)} exited right after starting; see {layout.log_dir}")

    def cancel_all_jobs(self) -> None:
        self._run("scancel", f"--user={pwd.getpwuid(os.geteuid()).pw_name}")
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and self._run("squeue", "--noheader").stdout.strip():
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel the jobs left, then stop the daemons this cluster started, newest first."""
        daemons = load_daemons(self.layout.pid_file)
        if any(d.name == "slurmctld" and is_running(d) for d in daemons):
            try:
                self.cancel_all_jobs()
            except (OSError, subprocess.SubprocessError):
                pass
        for daemon in reversed(daemons):
            stop_daemon(daemon)
        save_daemons(self.layout.pid_file, [])

    def running_daemons(self) -> list[Daemon]:
        return [d for d in load_daemons(self.layout.pid_file) if is_running(d)]
