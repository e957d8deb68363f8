"""Which checkpoints are kept, which one ``resume=auto`` picks, and that a partial one is never used."""

from __future__ import annotations

from pathlib import Path

import pytest

import torch

from infinity_train.checkpoint import Checkpointer, checkpoint_name, complete_checkpoints, resolve_resume, rng_state
from infinity_train.distributed import detect_world


class _Unit:
    name = "model"

    def state_dict(self):
        return {"w": torch.ones(2)}


def fake_checkpoint(directory: Path, step: int, complete: bool = True) -> Path:
    """A real (tiny) checkpoint; ``complete=False``: one killed before its meta.json was written."""
    path = directory / checkpoint_name(step)
    Checkpointer(directory, detect_world({}), keep_last=1000).save(step, [_Unit()], {}, {"reader": {}, "rng": rng_state()}, {"state": {"step": step}})
    if not complete:
        (path / "meta.json").unlink()
    return path


def test_keep_last_keep_every_and_branch_points(tmp_path):
    for step in range(5, 55, 5):
        fake_checkpoint(tmp_path, step)
    Checkpointer(tmp_path, detect_world({}), keep_last=2, keep_every=20, keep_steps=[15]).prune()
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [15, 20, 40, 45, 50]


def test_resume_auto_takes_the_newest_complete_checkpoint(tmp_path):
    fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20)
    fake_checkpoint(tmp_path, 30, complete=False)  # killed while writing meta.json
    (tmp_path / ".step_00000040.partial").mkdir()
    assert resolve_resume("auto", tmp_path) == tmp_path / "step_00000020"
    assert resolve_resume("none", tmp_path) is None
    assert resolve_resume("auto", tmp_path / "missing") is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "step_00000030"), tmp_path)
