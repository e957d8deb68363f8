"""Crash loop: SIGKILL a tiny training run at random moments and check that nothing is lost or duplicated.

For 1 process and for 2 FSDP processes (torchrun, gloo on CPU) the same tiny run (debug1 transformer,
64^2 synthetic data, fp32) is trained once uninterrupted, then again in another run directory while it is
killed ``--kills`` times: at a random time, or exactly inside a checkpoint write, just before a checkpoint's
rename, between a retention rename and its deletion, while a step is saved again, or during the export
(``INFINITY_TRAIN_CRASH_AT``, see ``infinity_train.checkpoint.crash_point``). After every kill each
``step_*`` directory that looks complete (has a meta.json) is verified and read whole; after the last kill
the run is let finish. Prints (JSON) per mode: kills, kill points by phase, training records per step,
max |delta loss| against the uninterrupted run, checkpoints checked / loadable.

    python benchmarks/crash_loop.py --kills 20              # both modes, about a few minutes on a laptop
    python benchmarks/crash_loop.py --kills 2 --modes 1     # a quick check
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infinity_train.checkpoint import CRASH_ENV, listed_checkpoints, verify_checkpoint  # noqa: E402
from infinity_train.checkpoint_files import CheckpointFileError, load_rank_file, safe_dcp_load  # noqa: E402
from tests.train.conftest import command_env, kill_runs_of, run_train, tiny_overrides, train_command  # noqa: E402

# (a step saved again is rare in a loop like this one; its rename is unit-tested in tests/train/test_checkpoint_safety.py)
PHASES = ("random-time", "random-time", "checkpoint-write", "checkpoint-rename", "retention", "export")


def overrides(data_root: Path, run_dir: Path, tokenizer: Path, steps: int, nproc: int) -> list[str]:
    extra = ["parallel=fsdp", "data.num_workers=1"] if nproc > 1 else []
    return [
        *tiny_overrides(data_root, run_dir, steps=steps, logging__checkpoint_every=2, logging__keep_last=2),
        f"tokenizer.checkpoint={tokenizer}", "logging.sample_prompts=0", *extra,
    ]


def training_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip() and '"train/loss"' in line]


def check_checkpoints(run_dir: Path) -> tuple[int, int, list[str]]:
    """(checked, loadable, problems) over every step_* directory with a meta.json."""
    checked = loadable = 0
    problems = []
    for _, path in listed_checkpoints(run_dir / "checkpoints"):
        checked += 1
        try:
            meta = verify_checkpoint(path)
            if (path / "dcp").is_dir():
                state: dict = {}
                safe_dcp_load(state, path / "dcp", no_dist=True)  # every tensor and entry read back
                if not state:
                    raise CheckpointFileError(f"{path}: empty")
            for rank in range(meta["world_size"]):
                load_rank_file(path / "ranks" / f"rank{rank:05d}.pt")
            loadable += 1
        except (CheckpointFileError, FileNotFoundError) as error:
            problems.append(str(error))
    return checked, loadable, problems


def phase_now(run_dir: Path) -> str:
    """What the run was doing when it was killed, read off its files."""
    checkpoints = run_dir / "checkpoints"
    names = [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []
    if any(n.endswith(".partial") for n in names):
        return "checkpoint-write"
    if any(n.startswith(".trash-") for n in names):
        return "retention"
    if (run_dir / "export" / ".model.safetensors.tmp").exists():
        return "export"
    return "training" if names else "start-up"


def one_mode(nproc: int, kills: int, steps: int, work: Path, data_root: Path, tokenizer: Path, rng: random.Random) -> dict:
    reference_dir = work / f"reference-{nproc}"
    result = run_train(overrides(data_root, reference_dir, tokenizer, steps, nproc), nproc=nproc, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"reference run failed: {result.stderr[-2000:]}")
    reference = {r["step"]: r["train/loss"] for r in training_records(reference_dir)}
    by_phase: collections.Counter[str] = collections.Counter()
    checked = loadable = 0
    problems: list[str] = []
    finished: list[Path] = []
    done = 0
    started_total = time.time()
    run_dir = work / f"crashed-{nproc}-0"
    while done < kills:
        args = overrides(data_root, run_dir, tokenizer, steps, nproc)
        phase = rng.choice(PHASES)
        env = command_env()
        if phase != "random-time":
            # the n-th time the point is reached (a run saves steps/2 checkpoints and prunes all but 2; one export)
            env[CRASH_ENV] = f"{phase}:{1 if phase == 'export' else rng.randint(1, max(1, steps // 4))}"
        began = time.time()
        process = subprocess.Popen(train_command(args, nproc), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if phase == "random-time":
            metrics = run_dir / "metrics.jsonl"
            delay = None
            while process.poll() is None:
                if delay is None and metrics.exists() and metrics.stat().st_mtime > began:
                    delay = time.time() + rng.uniform(0.0, 2.0)  # somewhere in the training steps of this start
                if delay is not None and time.time() >= delay:
                    break
                if time.time() - began > 600:
                    break
                time.sleep(0.005)
            observed = phase_now(run_dir) if process.poll() is None else "none"
            kill_runs_of(run_dir)
        else:
            try:
                process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                pass
            observed = phase if process.returncode not in (None, 0) else "none"
            kill_runs_of(run_dir)  # the other rank and the launcher, if still there
        _, err = process.communicate()
        if process.returncode == 0:  # finished before the kill: keep it for the checks, go on in a fresh directory
            by_phase["finished-before-kill"] += 1
            finished.append(run_dir)
            run_dir = work / f"crashed-{nproc}-{len(finished)}"
            continue
        if process.returncode not in (-signal.SIGKILL, 1) and err and "error:" in err:
            problems.append(f"restart failed ({process.returncode}): {err.strip().splitlines()[-1]}")
        if observed == "none":
            by_phase["point-not-reached"] += 1
            continue
        done += 1
        by_phase[observed] += 1
        c, l, p = check_checkpoints(run_dir)
        checked, loadable, problems = checked + c, loadable + l, problems + p
    final = run_train(overrides(data_root, run_dir, tokenizer, steps, nproc), nproc=nproc, timeout=900)
    if final.returncode != 0:
        problems.append(f"final run failed ({final.returncode}): {final.stderr.strip().splitlines()[-1] if final.stderr.strip() else ''}")
    finished.append(run_dir)
    per_step: collections.Counter[int] = collections.Counter()
    deltas = []
    missing = 0
    for directory in finished:
        c, l, p = check_checkpoints(directory)
        checked, loadable, problems = checked + c, loadable + l, problems + p
        records = training_records(directory)
        counts = collections.Counter(r["step"] for r in records)
        per_step.update(counts.values())
        losses = {r["step"]: r["train/loss"] for r in records}
        missing += len(set(reference) - set(losses))
        deltas += [abs(losses[s] - reference[s]) for s in reference if s in losses]
    return {
        "processes": nproc,
        "kills": done,
        "kill_points_by_phase": dict(sorted(by_phase.items())),
        "steps": steps,
        "runs_finished": len(finished),
        "training_records_per_step": {f"{k} record(s)": v for k, v in sorted(per_step.items())},
        "steps_missing": missing,
        "max_abs_delta_loss": max(deltas) if deltas else None,
        "checkpoints_checked": checked,
        "checkpoints_loadable": loadable,
        "problems": problems[:10],
        "wall_s": round(time.time() - started_total, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--modes", default="1,2", help="process counts to run, e.g. 1,2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="crash-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    data_root, tokenizer = work / "data", work / "tokenizer"
    if not (tokenizer / "export" / "tokenizer.safetensors").exists():
        result = run_train([*tiny_overrides(data_root, tokenizer, steps=2), "task=tokenizer", "logging.checkpoint_every=0", "tokenizer.latent_layernorm=true"])
        if result.returncode != 0:
            raise SystemExit(f"tokenizer run failed: {result.stderr[-2000:]}")
    report = [one_mode(int(n), args.kills, args.steps, work, data_root, tokenizer, rng) for n in args.modes.split(",")]
    print(json.dumps(report, indent=2))
    ok = all(
        r["kills"] == args.kills and list(r["training_records_per_step"]) == ["1 record(s)"] and r["steps_missing"] == 0
        and r["max_abs_delta_loss"] == 0.0
        and r["checkpoints_checked"] == r["checkpoints_loadable"] and not r["problems"]
        for r in report
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
