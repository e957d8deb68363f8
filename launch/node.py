"""What runs on one node: torchrun, made fit for preemption.

    python -m launch.node [--expect-gpus N] [--slurm-rendezvous] -- <torchrun arguments>

Everything after ``--`` is torchrun's own command line (``--nnodes 2 --nproc-per-node 8 --rdzv-backend
c10d ... -m infinity_train.train ...``). Three things differ from the ``torchrun`` command:

* a worker's exit status survives: when every failed worker exited with the trainer's requeue status
  (75: checkpointed after SIGUSR1/SIGTERM), the node exits 75 too, so the batch script can requeue
  (torchrun itself exits 1 for any failure);
* SIGUSR1 does not kill the agent: it passes the signal on to its workers (which torchrun starts in
  sessions of their own, out of reach of a signal to the agent's process group) and keeps waiting for
  them. Where Slurm signals every process of the step the workers get it twice, which the trainer's
  flag-setting handler treats as once;
* ``--slurm-rendezvous`` adds this node's Slurm ``NodeAddr`` as ``--local-addr`` and makes node 0
  the rendezvous host (``--rdzv-conf is_host=...``), so nothing depends on node names in DNS.

``--expect-gpus N`` stops with one clear line (exit 2) on a node that has fewer than N GPUs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping

from infinity_train import exit_codes
from launch.gpu_check import gpu_problem
from launch.workers import worker_pids


def node_exit_status(exit_codes_seen: Iterable[int]) -> int:
    """One status for the node from its failed workers' exit codes (negative: killed by that signal).

    All requeue -> requeue; otherwise the first real failure (a signal N becomes 128 + N, as in a shell)."""
    codes = list(exit_codes_seen)
    if not codes:
        return exit_codes.FAILURE
    if all(code == exit_codes.REQUEUE for code in codes):
        return exit_codes.REQUEUE
    for code in codes:
        if code not in (0, exit_codes.REQUEUE):
            return 128 - code if code < 0 else code
    return exit_codes.FAILURE


def _has_option(torchrun_args: list[str], *names: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in torchrun_args for name in names)


def slurm_rendezvous_args(torchrun_args: list[str], env: Mapping[str, str], addr_of: Callable[[str], str]) -> list[str]:
    """``torchrun_args`` plus this node's address and whether it hosts the rendezvous store."""
    extra: list[str] = []
    if not _has_option(torchrun_args, "--local-addr", "--local_addr"):
        extra.append(f"--local-addr={addr_of(env['SLURMD_NODENAME'])}")
    if not _has_option(torchrun_args, "--rdzv-conf", "--rdzv_conf"):
        extra.append(f"--rdzv-conf=is_host={'true' if env.get('SLURM_NODEID', '0') == '0' else 'false'}")
    return extra + torchrun_args


def run_torchrun(torchrun_args: list[str]) -> int:
    """torchrun in this process; returns the node's exit status instead of raising."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as error:
        statuses = [failure.exitcode for failure in error.failures.values()]
        status = node_exit_status(statuses)
        print(f"[launch.node] workers failed with exit codes {statuses}: node exits {status}", file=sys.stderr, flush=True)
        return status
    return exit_codes.OK


def forward_usr1_to_workers(signum: int, frame: object) -> None:
    pids = worker_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    print(f"[launch.node] SIGUSR1: passed on to workers {pids}; waiting for them to checkpoint and exit", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m launch.node [--expect-gpus N] [--slurm-rendezvous] -- <torchrun arguments>", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m launch.node")
    parser.add_argument("--expect-gpus", type=int, default=0)
    parser.add_argument("--slurm-rendezvous", action="store_true")
    own = parser.parse_args(args[:split])
    torchrun_args = args[split + 1 :]
    problem = gpu_problem(own.expect_gpus)
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return exit_codes.CONFIG_ERROR
    if own.slurm_rendezvous:
        from launch.slurm_nodes import node_addr

        env = os.environ
        print(
            f"[launch.node] job {env.get('SLURM_JOB_ID')} node {env.get('SLURMD_NODENAME')} ({env.get('SLURM_NODEID')} of "
            f"{env.get('SLURM_NNODES')}), SLURM_RESTART_COUNT={env.get('SLURM_RESTART_COUNT', '0')}",
            file=sys.stderr,
            flush=True,
        )

        torchrun_args = slurm_rendezvous_args(torchrun_args, os.environ, node_addr)
    signal.signal(signal.SIGUSR1, forward_usr1_to_workers)
    return run_torchrun(torchrun_args)


if __name__ == "__main__":
    sys.exit(main())
