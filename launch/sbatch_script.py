"""Render the sbatch script of a run: one srun task per node, each starting torchrun (through
``launch.node``) against a c10d rendezvous on the head node, and a requeue when training exits with
the requeue status after a preemption signal."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from infinity_train import exit_codes
from infinity_train.config.schema import ClusterConfig


@dataclass(frozen=True)
class BatchJob:
    name: str
    cluster: ClusterConfig
    run_dir: Path
    code_dir: Path  # the snapshot the job imports and reads conf/ from
    workdir: Path  # where the user submitted from: relative paths in the config keep their meaning
    python: str
    nproc_per_node: int
    program: list[str]  # what torchrun starts on every process: ["-m", "infinity_train.train", *overrides]
    env_file: Path | None = None
    resume_on_restart: bool = True  # a requeued attempt adds resume=auto (the trainer's newest checkpoint)


def sbatch_directives(job: BatchJob) -> list[str]:
    c = job.cluster
    options = [
        f"--job-name={job.name}",
        f"--nodes={c.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={c.cpus_per_task}",
    ]
    if c.gpus_per_node > 0:
        options.append(f"--gpus-per-node={c.gpus_per_node}")
    optional = {"mem": c.mem, "time": c.time, "partition": c.partition, "account": c.account, "qos": c.qos, "constraint": c.constraint}
    options += [f"--{key}={value}" for key, value in optional.items() if value]
    if c.signal_lead_s > 0:
        options.append(f"--signal=USR1@{c.signal_lead_s}")
    options += ["--requeue" if c.requeue else "--no-requeue", "--open-mode=append", f"--output={job.run_dir}/logs/slurm-%j.out"]
    lines = [f"#SBATCH {option}" for option in options]
    for extra in c.extra_directives:
        extra = extra.strip()
        lines.append(extra if extra.startswith("#SBATCH") else f"#SBATCH {extra}")
    return lines


def _q(value: object) -> str:
    return shlex.quote(str(value))


def render_sbatch(job: BatchJob) -> str:
    c = job.cluster
    env_lines = (
        ["# NCCL and network settings of this cluster (cluster.env_file, copied at submission)", "set -a", f"source {_q(job.env_file)}", "set +a"]
        if job.env_file
        else ["# no cluster.env_file: NCCL and network settings are the defaults of the nodes"]
    )
    program = " ".join(_q(arg) for arg in job.program)
    restart_lines = (
        [
            "# A requeued attempt continues from the newest checkpoint of the run, whatever resume= the first one had.",
            "restart_overrides=()",
            '[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && restart_overrides=(resume=auto)',
        ]
        if job.resume_on_restart
        else ["restart_overrides=()"]
    )
    return "\n".join(
        [
            "#!/bin/bash",
            f"# infinity-launch: {job.name} on {c.nodes} node(s) x {job.nproc_per_node} process(es), cluster={c.name}.",
            f"# Code and config are a snapshot in {job.code_dir}; the same job again: sbatch <this file>.",
            *sbatch_directives(job),
            "",
            "set -uo pipefail",
            f"RUN_DIR={_q(job.run_dir)}",
            f"CODE_DIR={_q(job.code_dir)}",
            f"WORKDIR={_q(job.workdir)}",
            f"PYTHON={_q(job.python)}",
            f"REQUEUE_EXIT={exit_codes.REQUEUE}",
            f"REQUEUE_ON_PREEMPTION={1 if c.requeue else 0}",
            "",
            "log() { printf '[infinity-launch %s] %s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" \"$*\"; }",
            'log "job ${SLURM_JOB_ID} start, SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}, nodes ${SLURM_JOB_NODELIST} (${SLURM_NNODES})"',
            "",
            *env_lines,
            "export PYTHONFAULTHANDLER=1 PYTHONUNBUFFERED=1",
            'export INFINITY_TRAIN_CONF="$CODE_DIR/conf"',
            "# Import the snapshot, never the working directory (PYTHONSAFEPATH: Python >= 3.11).",
            'export PYTHONPATH="$CODE_DIR${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1',
            'cd "$WORKDIR" || exit 1',
            'mkdir -p "$RUN_DIR/logs"',
            "",
            "# The rendezvous lives on the head node, addressed by its Slurm NodeAddr (names need not resolve).",
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            'head_addr=$(scontrol show node "$head_node" -o | sed -n "s/.*NodeAddr=\\([^ ]*\\).*/\\1/p")',
            'head_addr=${head_addr:-$head_node}',
            'rdzv_port=$("$PYTHON" -m launch.free_port) || exit 1',
            'log "rendezvous at ${head_addr}:${rdzv_port} on ${head_node}"',
            *restart_lines,
            "",
            'srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=0 --open-mode=append \\',
            '    --output="$RUN_DIR/logs/slurm-%j.node%n.out" \\',
            f'    "$PYTHON" -m launch.node --expect-gpus {c.gpus_per_node} --slurm-rendezvous -- \\',
            f'    --nnodes="$SLURM_NNODES" --nproc-per-node={job.nproc_per_node} \\',
            '    --rdzv-backend=c10d --rdzv-endpoint="${head_addr}:${rdzv_port}" --rdzv-id="$SLURM_JOB_ID" \\',
            f'    {program} ${{restart_overrides[@]+"${{restart_overrides[@]}}"}} &',
            "srun_pid=$!",
            "# A SIGUSR1 sent to this script only (scancel --batch --signal=USR1) goes on to the training step.",
            "trap 'log \"SIGUSR1: passing it to the training step\"; kill -USR1 \"$srun_pid\" 2>/dev/null' USR1",
            'while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid"; done',
            'wait "$srun_pid"',
            "status=$?",
            "trap - USR1",
            "",
            'if [ "$status" -eq "$REQUEUE_EXIT" ]; then',
            '    if [ "$REQUEUE_ON_PREEMPTION" -eq 1 ]; then',
            "        # an array task by <array id>_<index>: the task that carries the array's own id would requeue them all",
            '        job="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"',
            '        job="${job:-$SLURM_JOB_ID}"',
            '        log "training checkpointed after a preemption signal (exit $status): requeueing job $job"',
            '        scontrol requeue "$job" && exit 0',
            '        log "scontrol requeue failed; submit this script again to resume"',
            "    else",
            '        log "training checkpointed (exit $status); cluster.requeue is off: submit this script again to resume"',
            "    fi",
            "fi",
            'log "training finished with exit status $status"',
            'exit "$status"',
            "",
        ]
    )
