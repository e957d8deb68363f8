"""Node addresses as Slurm knows them (``NodeAddr``), since node names need not resolve through DNS."""

from __future__ import annotations

import re
import subprocess


def parse_node_addr(scontrol_line: str) -> str | None:
    """``NodeAddr`` from one line of ``scontrol show node NAME -o``."""
    match = re.search(r"(?:^|\s)NodeAddr=(\S+)", scontrol_line)
    return match.group(1) if match else None


def node_addr(name: str) -> str:
    """The address of node ``name`` (its name when Slurm lists no NodeAddr)."""
    result = subprocess.run(["scontrol", "show", "node", name, "-o"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"scontrol show node {name} failed: {result.stderr.strip()}")
    return parse_node_addr(result.stdout) or name
