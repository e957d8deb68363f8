"""``launch.plan``: the launcher sets world_size and an absolute run_dir, and sizes Slurm jobs from the
cluster group."""

from __future__ import annotations

from pathlib import Path

import pytest

from infinity_train.config import ConfigError, load_config
from launch.plan import hydra_quote, override_key, override_value, plan_launch, plan_slurm


def test_override_keys_and_last_value_wins() -> None:
    assert [override_key(o) for o in ("a.b=1", "+c=2", "++d=3", "~e")] == ["a.b", "c", "d", "e"]
    assert override_value(["x=1", "y=2", "x=3"], "x") == "3"
    assert override_value(["x=1"], "z") is None


def test_local_plan_sets_world_size_and_an_absolute_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = plan_launch(["parallel=ddp", "run_dir=relative/run"], nnodes=1, nproc_per_node=2)
    assert plan.world_size == 2 and plan.cfg.world_size == 2
    assert plan.run_dir == tmp_path / "relative" / "run"
    assert plan.trainer_overrides == ["parallel=ddp", f"run_dir={tmp_path / 'relative' / 'run'}", "world_size=2"]


def test_default_run_dir_is_runs_slash_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = plan_launch(["name=probe"], nnodes=1, nproc_per_node=1)
    assert plan.run_dir == tmp_path / "runs" / "probe"


def test_a_different_explicit_world_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="world_size=4 but this launch starts 2 processes"):
        plan_launch(["parallel=ddp", "world_size=4"], nnodes=2, nproc_per_node=1)
    assert plan_launch(["parallel=ddp", "world_size=2"], nnodes=2, nproc_per_node=1).world_size == 2


def test_invalid_configs_fail_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="parallel=single runs one process"):
        plan_launch([], nnodes=1, nproc_per_node=2)
    with pytest.raises(ConfigError, match="must divide evenly across 3 ranks"):
        plan_launch(["parallel=ddp", "data.global_batch_size=16"], nnodes=3, nproc_per_node=1)


def test_slurm_plan_defaults_to_cluster_slurm_one_process_per_gpu() -> None:
    plan = plan_slurm(["parallel=fsdp", "cluster.nodes=4", "data.global_batch_size=64"])
    assert plan.cfg.cluster.name == "slurm"
    assert (plan.nnodes, plan.nproc_per_node, plan.world_size) == (4, 8, 32)
    assert plan.trainer_overrides[0] == "cluster=slurm"


def test_slurm_plan_on_cpu_nodes_runs_one_process_per_node() -> None:
    plan = plan_slurm(["cluster=slurm_test", "parallel=ddp"])
    assert (plan.nnodes, plan.nproc_per_node) == (2, 1)


def test_slurm_plan_refuses_a_local_cluster() -> None:
    with pytest.raises(ConfigError, match="cluster=local is a local cluster"):
        plan_slurm(["cluster=local"])


def test_run_dir_with_spaces_survives_as_one_hydra_override(tmp_path: Path) -> None:
    odd = tmp_path / "with space's"
    cfg = load_config([f"run_dir={hydra_quote(str(odd))}"])
    assert cfg.run_dir == str(odd)
    assert hydra_quote("/plain/path-1.x") == "/plain/path-1.x"
