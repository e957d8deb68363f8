"""``infinity-launch``: start training on this machine or on a Slurm cluster.

    infinity-launch local [--nproc N] [-- overrides]                    one node, torchrun standalone
    infinity-launch local --nnodes N --rdzv-endpoint HOST:PORT [--nproc N] [-- overrides]
                                                                        run the same command on every node
    infinity-launch slurm [--dry-run] [--wait] [-- overrides]           render the sbatch script and submit it

Overrides are the trainer's Hydra overrides (``model=debug1 data=synthetic64 parallel=ddp ...``); the
launcher sets ``world_size`` and an absolute ``run_dir``. ``slurm`` sizes the job from the ``cluster``
group (``cluster=slurm`` unless the overrides pick another). ``--comm-check`` runs a collective over
all ranks (``launch.comm_check``) instead of training, to test rendezvous and networking.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from infinity_train import exit_codes
from infinity_train.config import ConfigError
from launch.node import run_torchrun
from launch.plan import LaunchPlan, plan_launch, plan_slurm
from launch.submit import plan_submission, sbatch, write_submission
from launch.torchrun_args import multinode_args, rendezvous_id, standalone_args, trainer_program


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Launcher options before ``--``, trainer overrides after it."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def _comm_check_program(plan: LaunchPlan) -> list[str]:
    return ["-m", "launch.comm_check", "--out", str(plan.run_dir / "comm_check.json"), "--device", plan.cfg.device]


def _default_nproc() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def _local(options: argparse.Namespace, overrides: list[str]) -> int:
    nproc = options.nproc or _default_nproc()
    plan = plan_launch(overrides, options.nnodes, nproc)
    program = _comm_check_program(plan) if options.comm_check else trainer_program(plan.trainer_overrides)
    if options.nnodes == 1 and not options.rdzv_endpoint:
        args = standalone_args(nproc, program)
    elif not options.rdzv_endpoint:
        raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (an address of the first node that every node reaches)")
    else:
        args = multinode_args(options.nnodes, nproc, options.rdzv_endpoint, options.rdzv_id or rendezvous_id(plan.run_dir), program)
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    print(f"[infinity-launch] torchrun {' '.join(args)}", file=sys.stderr, flush=True)
    return run_torchrun(args)


def _slurm(options: argparse.Namespace, overrides: list[str]) -> int:
    plan = plan_slurm(overrides)
    program = _comm_check_program(plan) if options.comm_check else None
    submission = plan_submission(plan, Path.cwd(), program=program)
    if options.dry_run:
        from launch.sbatch_script import render_sbatch

        print(render_sbatch(submission.job), end="")
        return exit_codes.OK
    if sys.version_info < (3, 11):
        print("warning: Python < 3.11 ignores PYTHONSAFEPATH: submit from outside the checkout so the job imports its snapshot", file=sys.stderr)
    script = write_submission(submission, plan)
    print(f"[infinity-launch] {script} (code snapshot and config beside it); logs in {plan.run_dir / 'logs'}", file=sys.stderr, flush=True)
    return sbatch(script, wait=options.wait, env=os.environ)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infinity-launch", description="Start training on this machine or on a Slurm cluster.", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="torchrun on this machine (or on each node with --rdzv-endpoint)")
    local.add_argument("--nproc", type=int, default=0, help="processes on this node (default: one per GPU, 1 without GPUs)")
    local.add_argument("--nnodes", type=int, default=1)
    local.add_argument("--rdzv-endpoint", help="HOST:PORT of the c10d rendezvous (multi-node)")
    local.add_argument("--rdzv-id", help="rendezvous id shared by all nodes (default: derived from the run directory)")
    local.add_argument("--comm-check", action="store_true", help="run launch.comm_check instead of training")
    slurm = commands.add_parser("slurm", help="render the sbatch script from the config and submit it")
    slurm.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")
    slurm.add_argument("--wait", action="store_true", help="wait for the job (through requeues) and exit with its status")
    slurm.add_argument("--comm-check", action="store_true", help="run launch.comm_check instead of training")
    return parser


def main(argv: list[str] | None = None) -> int:
    options_argv, overrides = _split(list(sys.argv[1:] if argv is None else argv))
    options = build_parser().parse_args(options_argv)
    try:
        return {"local": _local, "slurm": _slurm}[options.command](options, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
