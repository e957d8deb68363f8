"""A real two-node Slurm cluster for the launcher tests, started once per session (installing
slurm-wlm and munge with apt-get when missing) and stopped at the end."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch.slurm_test_cluster.cluster import TestCluster
from launch.slurm_test_cluster.packages import cannot_run_reason, ensure_installed
from infinity_train.config import load_config, to_typed
from infinity_train.distributed import detect_world
from infinity_train.train.data import prepare_synthetic
from slurm_helpers import TIMINGS, tiny_overrides


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "emulated Slurm cluster")
        for line in TIMINGS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[TestCluster]:
    reason = cannot_run_reason()
    if reason:
        pytest.skip(f"no emulated Slurm cluster: {reason}")
    installed_s = ensure_installed()
    if installed_s:
        TIMINGS.append(f"apt-get install slurm-wlm munge: {installed_s:.1f} s")
    started = time.monotonic()
    cluster = TestCluster.create()
    cluster.start()
    TIMINGS.append(f"cluster start (munged, slurmctld, {len(cluster.node_names)} x slurmd, nodes idle): {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.layout.root, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic data folder for all Slurm jobs, written here once: jobs running at the same time
    must not both write it (concurrent writers of one data.root break each other's shards)."""
    root = tmp_path_factory.mktemp("synthetic64")
    data_overrides = [o for o in tiny_overrides(root, root / "unused", steps=1) if o.startswith("data")]
    prepare_synthetic(to_typed(load_config(data_overrides)).data, detect_world({}))
    return root
