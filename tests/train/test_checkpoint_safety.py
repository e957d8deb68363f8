"""Checkpoints an attacker or a crash can hand the trainer: a crafted pickle runs no code at any entry point,
a damaged checkpoint is one line and status 2 (``resume=auto`` skips it for the previous complete one), and a
resumed run keeps exactly one record per step in metrics.jsonl."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from infinity_train import exit_codes
from infinity_train.checkpoint import Checkpointer, listed_checkpoints, resolve_resume, verify_checkpoint
from infinity_train.checkpoint_files import (
    DamagedCheckpoint,
    UnsafeCheckpoint,
    check_deepspeed_directory,
    load_rank_file,
    read_dcp_metadata,
    safe_dcp_load,
)
from infinity_train.distributed import detect_world
from infinity_train.run_dir import MetricsFile

from .conftest import run_train, tiny_overrides, train_losses


class Trojan:
    """Unpickling this creates ``marker``: the proof that a load ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


pytestmark = pytest.mark.usefixtures("single_thread")


def train_in_process(overrides: list[str], capfd) -> tuple[int, list[str]]:
    """The training command's own ``main`` in this process: (status, stderr lines that are not log records)."""
    from infinity_train.console import setup_logging
    from infinity_train.train.entry import main

    setup_logging()  # rebinds the console handler to this test's stderr (an earlier run's may point at a closed one)
    status = main(overrides)
    err = capfd.readouterr().err
    return status, [line for line in err.splitlines() if line.strip() and " INFO [rank " not in line and " WARNING [rank " not in line]


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory, data_root, trained_tokenizer) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4 (trained in this process)."""
    from infinity_train.train.entry import main

    run_dir = tmp_path_factory.mktemp("checkpointed") / "run"
    assert main([*tiny_overrides(data_root, run_dir, steps=4), f"tokenizer.checkpoint={trained_tokenizer}", "logging.sample_prompts=0"]) == 0
    return run_dir


def overrides_for(data_root, run_dir, tokenizer, steps=6, *extra):
    return [*tiny_overrides(data_root, run_dir, steps=steps), f"tokenizer.checkpoint={tokenizer}", *extra]


def trojan_copy(source: Path, target: Path, marker: Path) -> Path:
    """A copy of a checkpoint whose DCP index is a crafted pickle, its size updated in meta.json as an attacker would."""
    shutil.copytree(source, target)
    (target / "dcp" / ".metadata").write_bytes(pickle.dumps(Trojan(marker)))
    _edit_meta(target, lambda meta: meta["files"].update({"dcp/.metadata": (target / "dcp" / ".metadata").stat().st_size}))
    return target


# ---------------------------------------------------------------- no code execution


def test_crafted_metadata_is_refused_by_the_command(tmp_path, data_root, trained_tokenizer, checkpointed):
    marker = tmp_path / "MARKER"
    evil = trojan_copy(checkpointed / "checkpoints" / "step_00000004", tmp_path / "evil" / "step_00000004", marker)
    run_dir = tmp_path / "run"
    result = run_train(overrides_for(data_root, run_dir, trained_tokenizer, 6, f"resume={evil}"))
    assert result.returncode == exit_codes.CONFIG_ERROR, result.stderr[-2000:]
    assert not marker.exists()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and ".metadata: refused" in lines[0] and "posix.system" in lines[0]
    assert not run_dir.exists()  # refused before the run directory was touched


def test_crafted_step_in_checkpoints_is_refused_by_resume_auto(tmp_path, data_root, trained_tokenizer, checkpointed, capfd):
    marker = tmp_path / "MARKER"
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed, run_dir)
    config = (run_dir / "config.yaml").read_text()
    trojan_copy(run_dir / "checkpoints" / "step_00000004", run_dir / "checkpoints" / "step_00000006", marker)
    status, lines = train_in_process(overrides_for(data_root, run_dir, trained_tokenizer, 8), capfd)
    assert status == exit_codes.CONFIG_ERROR and not marker.exists()
    assert len(lines) == 1 and "step_00000006/dcp/.metadata: refused" in lines[0]
    assert (run_dir / "config.yaml").read_text() == config and not list(run_dir.glob("config.prev-*"))


def test_crafted_checkpoint_is_refused_by_init_from(tmp_path, data_root, trained_tokenizer, checkpointed, capfd):
    marker = tmp_path / "MARKER"
    evil = trojan_copy(checkpointed / "checkpoints" / "step_00000002", tmp_path / "evil", marker)
    status, lines = train_in_process(overrides_for(data_root, tmp_path / "run", trained_tokenizer, 6, f"init_from={evil}"), capfd)
    assert status == exit_codes.CONFIG_ERROR and not marker.exists()
    assert len(lines) == 1 and "evil/dcp/.metadata: refused" in lines[0]


def test_crafted_entries_inside_shards_rank_files_and_deepspeed_files_are_refused(tmp_path, checkpointed):
    import torch.distributed.checkpoint as dcp

    marker = tmp_path / "MARKER"
    # a non-tensor entry of a .distcp shard (DCP itself reads those with weights_only=False)
    dcp.save({"unit": {"w": torch.ones(2), "evil": Trojan(marker)}}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    with pytest.raises(UnsafeCheckpoint, match="refused entry unit.evil: it asks for posix.system"):
        safe_dcp_load({"unit": {"w": torch.zeros(2), "evil": 0}}, tmp_path / "dcp", no_dist=True)
    # a rank file
    torch.save({"reader": {}, "rng": Trojan(marker)}, tmp_path / "rank00000.pt")
    with pytest.raises(UnsafeCheckpoint, match="rank00000.pt: refused: it asks for posix.system"):
        load_rank_file(tmp_path / "rank00000.pt")
    # DeepSpeed's files (DeepSpeed reads them with weights_only=False): checked before DeepSpeed may open them
    (tmp_path / "deepspeed").mkdir()
    torch.save({"module": {"w": torch.ones(1)}, "ds_config": Trojan(marker)}, tmp_path / "deepspeed" / "mp_rank_00_model_states.pt")
    with pytest.raises(UnsafeCheckpoint, match="mp_rank_00_model_states.pt: refused: it asks for posix.system"):
        check_deepspeed_directory(tmp_path / "deepspeed")
    assert not marker.exists()
    # what DeepSpeed's own optimizer files hold passes
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    torch.save({"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.gradients, "w": torch.ones(1)}, tmp_path / "deepspeed" / "mp_rank_00_model_states.pt")
    check_deepspeed_directory(tmp_path / "deepspeed")
    # the real index this project writes reads through the allow-list
    assert len(read_dcp_metadata(checkpointed / "checkpoints" / "step_00000004" / "dcp").state_dict_metadata) > 10


# ---------------------------------------------------------------- damaged checkpoints: one line, status 2


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_meta(path: Path, change) -> None:
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


DAMAGES = {
    "no dcp/": (lambda c: shutil.rmtree(c / "dcp"), "dcp/.metadata: missing"),
    "truncated shard": (lambda c: _truncate(c / "dcp" / "__0_0.distcp"), "__0_0.distcp: "),
    "truncated rank file": (lambda c: _truncate(c / "ranks" / "rank00000.pt"), "rank00000.pt: "),
    "no world_size": (lambda c: _edit_meta(c, lambda m: m.pop("world_size")), "'world_size' must be an integer (missing)"),
    "another version": (lambda c: _edit_meta(c, lambda m: m.update(version=99)), "written by another version of infinity-train"),
    "garbage index": (lambda c: (c / "dcp" / ".metadata").write_bytes(os.urandom(300)), ".metadata: "),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_is_one_line_and_status_2(tmp_path, data_root, trained_tokenizer, checkpointed, capfd, damage):
    change, message = DAMAGES[damage]
    copy = tmp_path / "step_00000004"
    shutil.copytree(checkpointed / "checkpoints" / "step_00000004", copy)
    change(copy)
    status, lines = train_in_process(overrides_for(data_root, tmp_path / "run", trained_tokenizer, 6, f"resume={copy}"), capfd)
    assert status == exit_codes.CONFIG_ERROR, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_truncated_tokenizer_file_is_one_line_and_status_2(tmp_path, data_root, trained_tokenizer, capfd):
    tokenizer = tmp_path / "tokenizer.safetensors"
    tokenizer.write_bytes((trained_tokenizer / "export" / "tokenizer.safetensors").read_bytes()[:5000])
    status, lines = train_in_process(overrides_for(data_root, tmp_path / "run", tokenizer), capfd)
    assert status == exit_codes.CONFIG_ERROR
    assert len(lines) == 1 and "tokenizer.safetensors: damaged safetensors file" in lines[0], lines


def test_resume_auto_skips_a_damaged_newest_checkpoint(tmp_path, data_root, trained_tokenizer, checkpointed, capfd):
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed, run_dir)
    _truncate(run_dir / "checkpoints" / "step_00000004" / "dcp" / "__0_0.distcp", 0.9)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # torn by a kill mid-write
    assert [s for s, _ in listed_checkpoints(run_dir / "checkpoints")] == [2, 4]
    assert resolve_resume("auto", run_dir / "checkpoints") == run_dir / "checkpoints" / "step_00000002"
    from infinity_train.train.entry import main

    assert main(overrides_for(data_root, run_dir, trained_tokenizer, 4)) == exit_codes.OK
    err = capfd.readouterr().err
    assert "WARNING [rank 0] infinity_train.train.trainer: resume=auto skips damaged checkpoint step_00000004:" in err
    assert "__0_0.distcp:" in err and "resumed from" in err and "step_00000002 at step 2" in err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train/loss"' in line]
    assert steps == [1, 2, 3, 4]  # one training record per step: 3 and 4 were superseded, the torn line dropped
    assert train_losses(run_dir) == train_losses(checkpointed)
    verify_checkpoint(run_dir / "checkpoints" / "step_00000004")  # saved again, whole


# ---------------------------------------------------------------- metrics and retention


def test_metrics_rows_past_the_start_are_dropped_and_a_torn_line_too(tmp_path):
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        metrics.write(step, {"train/loss": float(step)})
    with open(metrics.path, "a") as f:
        f.write('{"step": 4, "tra')
    assert metrics.truncate_after(3) == 0
    assert metrics.path.read_text().endswith("}\n") and [r["step"] for r in metrics.read()] == [1, 2, 3]
    assert metrics.truncate_after(0) == 3  # a start from scratch (killed before the first checkpoint)
    assert metrics.path.read_text() == ""


class _Unit:
    name = "model"

    def __init__(self) -> None:
        self.w = torch.arange(4.0)

    def state_dict(self):
        return {"w": self.w}


def _save(checkpointer: Checkpointer, step: int) -> None:
    from infinity_train.checkpoint import rng_state

    checkpointer.save(step, [_Unit()], {}, {"reader": {}, "rng": rng_state()}, {"state": {"step": step}})


def test_retention_and_resaving_never_leave_a_complete_looking_directory_that_does_not_verify(tmp_path, monkeypatch):
    world = detect_world({})
    checkpointer = Checkpointer(tmp_path, world, keep_last=2)
    for step in (1, 2, 3):
        _save(checkpointer, step)
    assert [s for s, _ in listed_checkpoints(tmp_path)] == [2, 3]
    # a kill between renaming a pruned checkpoint to trash and deleting it: the trash is not listed, and the
    # next start removes it
    import infinity_train.checkpoint as module

    monkeypatch.setattr(module, "_remove", lambda path: None)
    _save(checkpointer, 4)
    _save(checkpointer, 4)  # the same step saved again: the old directory is moved aside, never emptied in place
    assert [s for s, _ in listed_checkpoints(tmp_path)] == [3, 4]
    assert any(p.name.startswith(".trash-step_00000002") for p in tmp_path.iterdir())
    monkeypatch.undo()
    (tmp_path / ".step_00000005.partial" / "dcp").mkdir(parents=True)  # a save cut short
    Checkpointer(tmp_path, world, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003", "step_00000004"]
    for _, path in listed_checkpoints(tmp_path):
        verify_checkpoint(path)
    with pytest.raises(DamagedCheckpoint, match="ranks/rank00000.pt: 3 bytes"):
        (tmp_path / "step_00000004" / "ranks" / "rank00000.pt").write_bytes(b"abc")
        verify_checkpoint(tmp_path / "step_00000004")


def test_non_finite_weights_after_an_update_are_never_checkpointed(tmp_path, data_root, trained_tokenizer):
    from infinity_train.config import load_config, to_typed, validate
    from infinity_train.train import NonFiniteError, Trainer

    run_dir = tmp_path / "run"
    resolved = load_config([*overrides_for(data_root, run_dir, trained_tokenizer, 6), "world_size=1"])
    trainer = Trainer(validate(to_typed(resolved)), resolved, detect_world({}))
    unit = trainer.units["model"]
    step = unit.step

    def overflowing_step(lr):  # finite gradients, but the update overflows a weight (as a huge lr would)
        result = step(lr)
        if trainer.state.step == 3:  # the fourth update (saved as step 4)
            next(iter(unit.model.parameters())).data.fill_(float("inf"))
        return result

    unit.step = overflowing_step
    with pytest.raises(NonFiniteError, match="weights are non-finite after the update of step 4"):
        trainer.fit()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_00000002"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["device=cuda"], "device=cuda but CUDA is not available"),
        (["parallel=zero2"], "parallel=zero2 (DeepSpeed) needs a launcher"),
        (["run_dir={file}/run"], "is not a folder"),
        (["optim.lr=inf"], "values must be finite numbers: optim.lr=inf"),
        (["+foo=bar"], "unknown config key(s): foo"),
    ],
)
def test_impossible_settings_are_one_line_before_any_work(tmp_path, data_root, trained_tokenizer, capfd, extra, message):
    if extra == ["device=cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "file").write_text("")
    extra = [item.format(file=tmp_path / "file") for item in extra]
    status, lines = train_in_process(overrides_for(data_root, tmp_path / "run", trained_tokenizer, 6, *extra), capfd)
    assert status == exit_codes.CONFIG_ERROR
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("async_save", [False, True])
def test_a_failed_checkpoint_write_is_one_line_and_leaves_the_newest_checkpoint(tmp_path, data_root, trained_tokenizer, checkpointed, capfd, monkeypatch, async_save):
    """Disk full while writing step 6 (as torch's writer reports it): status 2, one line naming the checkpoint
    folder and its free space, no partial save left behind, and step 4 still the newest complete checkpoint."""
    import torch.distributed.checkpoint as dcp

    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed, run_dir)

    failure = RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: file write failed")

    def disk_full(*args, **kwargs):
        raise failure

    def disk_full_later(*args, **kwargs):  # async: the background write fails, its future raises
        future = concurrent.futures.Future()
        future.set_exception(failure)
        return future

    monkeypatch.setattr(dcp, "async_save" if async_save else "save", disk_full_later if async_save else disk_full)
    extra = ["logging.async_checkpoint=true"] if async_save else []
    status, lines = train_in_process(overrides_for(data_root, run_dir, trained_tokenizer, 6, *extra), capfd)
    assert status == exit_codes.CONFIG_ERROR
    assert len(lines) == 1, "\n".join(lines)
    assert str(run_dir / "checkpoints") in lines[0] and "writing step_00000006 failed" in lines[0] and "GB free there" in lines[0]
    checkpoints = run_dir / "checkpoints"
    assert [s for s, _ in listed_checkpoints(checkpoints)] == [2, 4]
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".partial")]
    verify_checkpoint(checkpoints / "step_00000004")
