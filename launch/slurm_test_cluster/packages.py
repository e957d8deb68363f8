"""The Debian packages a test cluster needs (slurm-wlm, munge): what is missing, and installing it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def cannot_run_reason() -> str | None:
    """Why a test cluster cannot run on this machine, or None when it can (possibly after installing)."""
    if os.geteuid() != 0:
        return "the emulated Slurm cluster needs root (munged runs as the munge user, slurmd as root)"
    if missing_binaries() and shutil.which("apt-get") is None:
        return f"slurm-wlm and munge are not installed ({', '.join(missing_binaries())} missing) and there is no apt-get"
    return None


def install_packages(timeout_s: float = 1200.0) -> float:
    """``apt-get update`` and ``apt-get install -y slurm-wlm munge``; returns the seconds it took."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    started = time.monotonic()
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    still_missing = missing_binaries()
    if still_missing:
        raise RuntimeError(f"installed {', '.join(PACKAGES)} but {', '.join(still_missing)} are still missing")
    return time.monotonic() - started


def ensure_installed() -> float:
    """Install the packages when a binary is missing; returns the install time (0.0 when nothing was done)."""
    return install_packages() if missing_binaries() else 0.0
