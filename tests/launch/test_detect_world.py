"""``detect_world``: rank and world size from torchrun's environment first, else Slurm's, else one process."""

from __future__ import annotations

import pytest

from infinity_train.distributed import DEFAULT_PORT, detect_world, first_slurm_host

TORCHRUN_NODE1_OF_2 = {
    "RANK": "5",
    "LOCAL_RANK": "1",
    "WORLD_SIZE": "8",
    "LOCAL_WORLD_SIZE": "4",
    "GROUP_RANK": "1",
    "MASTER_ADDR": "10.0.0.7",
    "MASTER_PORT": "41234",
}
SLURM_TASK_3_OF_4 = {
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "4",
    "SLURM_NODEID": "1",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NODELIST": "gpu[007-008]",
    "SLURM_STEP_ID": "0",
}


def test_torchrun_variables_give_rank_node_and_rendezvous() -> None:
    world = detect_world(TORCHRUN_NODE1_OF_2)
    assert (world.launcher, world.rank, world.local_rank, world.world_size) == ("torchrun", 5, 1, 8)
    assert (world.local_world_size, world.node_rank, world.num_nodes) == (4, 1, 2)
    assert (world.master_addr, world.master_port) == ("10.0.0.7", 41234)
    assert world.is_distributed and not world.is_main


def test_torchrun_wins_over_slurm_inside_an_srun_task() -> None:
    """srun starts one torchrun per node; its workers see both sets of variables and must follow torchrun's."""
    world = detect_world({**SLURM_TASK_3_OF_4, **TORCHRUN_NODE1_OF_2})
    assert world.launcher == "torchrun" and world.rank == 5 and world.world_size == 8


def test_slurm_variables_one_task_per_process() -> None:
    world = detect_world(SLURM_TASK_3_OF_4)
    assert (world.launcher, world.rank, world.local_rank, world.world_size) == ("slurm", 3, 1, 4)
    assert (world.node_rank, world.num_nodes, world.local_world_size) == (1, 2, 2)
    assert world.master_addr == "gpu007" and world.master_port == DEFAULT_PORT


def test_slurm_heterogeneous_tasks_per_node_takes_the_first_count() -> None:
    world = detect_world({**SLURM_TASK_3_OF_4, "SLURM_NTASKS_PER_NODE": "2(x2)"})
    assert world.local_world_size == 2


def test_slurm_master_addr_from_the_environment_wins_over_the_node_list() -> None:
    world = detect_world({**SLURM_TASK_3_OF_4, "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "30001"})
    assert (world.master_addr, world.master_port) == ("10.1.2.3", 30001)


def test_the_batch_shell_outside_a_job_step_is_a_single_process() -> None:
    """The batch script also sees SLURM_PROCID=0 and SLURM_NTASKS=<nodes>, but no SLURM_STEP_ID."""
    batch_shell = {k: v for k, v in SLURM_TASK_3_OF_4.items() if k != "SLURM_STEP_ID"} | {"SLURM_PROCID": "0"}
    assert detect_world(batch_shell).launcher == "single"


def test_no_launcher_is_a_single_process() -> None:
    world = detect_world({})
    assert (world.launcher, world.rank, world.world_size, world.num_nodes) == ("single", 0, 1, 1)
    assert world.is_main and not world.is_distributed


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("n[1-2]", "n1"),
        ("gpu[003-005,009],cpu1", "gpu003"),
        ("node1,node2", "node1"),
        ("a-b[07]", "a-b07"),
        ("localhost", "localhost"),
        ("rack[1-2]-node[01-04]", "rack1-node01"),
        ("a[7],b[1-3]", "a7"),
    ],
)
def test_first_slurm_host(nodelist: str, first: str) -> None:
    assert first_slurm_host(nodelist) == first


def test_first_slurm_host_rejects_an_empty_list() -> None:
    with pytest.raises(ValueError):
        first_slurm_host("")


@pytest.mark.parametrize("env, expected", [(SLURM_TASK_3_OF_4, (3, 4)), (TORCHRUN_NODE1_OF_2, (5, 8)), ({}, (0, 1))])
def test_the_data_reader_shards_by_the_trainers_rule(monkeypatch, env, expected) -> None:
    """The reader asks the same helper as the trainer: a Slurm job step without torchrun is rank 3 of 4 there too."""
    from data_pipelines.reader.config import distributed_rank_and_size

    for key in [*SLURM_TASK_3_OF_4, *TORCHRUN_NODE1_OF_2]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed_rank_and_size(None, None) == expected
    assert distributed_rank_and_size(None, 2) == (expected[0], 2)
