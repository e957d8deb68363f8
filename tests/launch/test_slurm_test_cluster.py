"""The emulated Slurm cluster itself: its slurm.conf, and starting/stopping exactly the daemons it owns."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from launch.slurm_test_cluster.cluster import TestCluster, free_ports, plan_layout
from launch.slurm_test_cluster.daemons import Daemon, is_running, stop_daemon
from launch.slurm_test_cluster.slurm_conf import layout_from_json, layout_to_json, render_slurm_conf


def test_slurm_conf_runs_every_node_on_localhost_with_distinct_ports(tmp_path: Path) -> None:
    layout = plan_layout(tmp_path, num_nodes=2)
    conf = render_slurm_conf(layout).splitlines()
    for line in (
        "SlurmctldHost=localhost", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "AccountingStorageType=accounting_storage/none", "MailProg=/bin/true", f"StateSaveLocation={tmp_path}/state",
        f"AuthInfo=socket={tmp_path}/munge/munge.socket,cred_expire=10",
    ):
        assert line in conf
    nodes = [line for line in conf if line.startswith("NodeName=")]
    assert [n.split()[0] for n in nodes] == ["NodeName=n1", "NodeName=n2"]
    assert all("NodeHostname=localhost NodeAddr=127.0.0.1" in n for n in nodes)
    ports = {layout.controller_port, *(node.port for node in layout.nodes)}
    assert len(ports) == 3
    assert layout_from_json(layout_to_json(layout)) == layout


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8


def test_stop_never_signals_a_pid_now_running_something_else() -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10  # the child runs Python until its exec; wait for `sleep`
        while not is_running(Daemon("sleep", stranger.pid, "/bin/sleep")) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop_daemon(Daemon("munged", stranger.pid, "/usr/sbin/munged"), grace_s=0.5)
        assert stranger.poll() is None
        assert not is_running(Daemon("munged", stranger.pid, "/usr/sbin/munged"))
        assert is_running(Daemon("sleep", stranger.pid, "/bin/sleep"))
    finally:
        stranger.kill()
        stranger.wait()


def test_a_second_cluster_starts_and_stops_by_its_own_pids(slurm_cluster: TestCluster) -> None:
    """Uses the session cluster's set-up (packages, root) and leaves that cluster running."""
    other = TestCluster.create(num_nodes=1)
    try:
        other.start()
        daemons = other.running_daemons()
        assert [d.name for d in daemons] == ["munged", "slurmctld", "slurmd-n1"]
        assert other.node_states() == {"n1": "idle"}
        assert TestCluster.from_root(other.layout.root).layout == other.layout
    finally:
        other.stop()
        shutil.rmtree(other.layout.root, ignore_errors=True)
    assert not any(is_running(d) for d in daemons)
    assert slurm_cluster.running_daemons() and set(slurm_cluster.node_states()) == {"n1", "n2"}
