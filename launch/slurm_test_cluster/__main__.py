"""Start, inspect and stop an emulated Slurm cluster on this machine (root only).

    python -m launch.slurm_test_cluster start [--dir DIR] [--nodes 2] [--install]
    python -m launch.slurm_test_cluster status --dir DIR
    python -m launch.slurm_test_cluster stop --dir DIR

``start`` prints the ``export SLURM_CONF=...`` line that points sbatch, squeue, ... at the cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from launch.slurm_test_cluster.cluster import ClusterError, TestCluster
from launch.slurm_test_cluster.packages import cannot_run_reason, ensure_installed, missing_binaries


def _start(args: argparse.Namespace) -> int:
    reason = cannot_run_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    if missing_binaries():
        if not args.install:
            print(f"error: missing {', '.join(missing_binaries())}; rerun with --install (apt-get install slurm-wlm munge)", file=sys.stderr)
            return 1
        print(f"installed slurm-wlm and munge in {ensure_installed():.1f} s", file=sys.stderr)
    cluster = TestCluster.create(Path(args.dir) if args.dir else None, args.nodes)
    cluster.start()
    print(f"# cluster of {', '.join(cluster.node_names)} in {cluster.layout.root}; stop it with:", file=sys.stderr)
    print(f"#   python -m launch.slurm_test_cluster stop --dir {cluster.layout.root}", file=sys.stderr)
    print(f"export SLURM_CONF={cluster.layout.conf_path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = TestCluster.from_root(Path(args.dir))
    running = cluster.running_daemons()
    for daemon in running:
        print(f"{daemon.name} pid {daemon.pid}")
    if running:
        for name, state in cluster.node_states().items():
            print(f"node {name}: {state}")
    return 0 if running else 1


def _stop(args: argparse.Namespace) -> int:
    TestCluster.from_root(Path(args.dir)).stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.slurm_test_cluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="write the configuration and start the daemons")
    start.add_argument("--dir", help="cluster folder (default: a new temporary folder)")
    start.add_argument("--nodes", type=int, default=2, help="number of emulated nodes")
    start.add_argument("--install", action="store_true", help="apt-get install slurm-wlm munge when missing")
    for name, text in (("status", "list its running daemons and node states"), ("stop", "stop the daemons it started (by PID)")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--dir", required=True, help="the cluster folder that start printed")
    args = parser.parse_args(argv)
    try:
        return {"start": _start, "status": _status, "stop": _stop}[args.command](args)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
