"""The slurm.conf of a throwaway cluster whose emulated nodes all run on this machine."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeSpec:
    name: str
    port: int
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class ClusterLayout:
    """Where everything of one test cluster lives: all state, spool, logs and sockets under ``root``."""

    root: Path
    controller_port: int
    nodes: tuple[NodeSpec, ...]
    name: str = "infinitytest"
    partition: str = "debug"

    @property
    def conf_path(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def pid_file(self) -> Path:
        return self.root / "pids.json"


def render_slurm_conf(layout: ClusterLayout) -> str:
    """One controller on localhost and one NodeName line per emulated node (same host, distinct ports).

    cred_expire=10 lets a requeued job start again after ~10 s instead of the default two minutes;
    MinJobAge=5 keeps ``sbatch --wait`` polling every 2 s (it backs off only up to MinJobAge/2)."""
    root = layout.root
    lines = [
        f"ClusterName={layout.name}",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={layout.controller_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={layout.munge_socket},cred_expire=10",
        f"StateSaveLocation={layout.state_dir}",
        f"SlurmdSpoolDir={layout.spool_dir}/%n",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmctldLogFile={layout.log_dir}/slurmctld.log",
        f"SlurmdLogFile={layout.log_dir}/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "MinJobAge=5",
        "KillWait=10",
        "SchedulerParameters=sched_interval=2,bf_interval=1",
    ]
    for node in layout.nodes:
        lines.append(
            f"NodeName={node.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={node.port} "
            f"CPUs={node.cpus} RealMemory={node.memory_mb} State=UNKNOWN"
        )
    lines.append(f"PartitionName={layout.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def layout_to_json(layout: ClusterLayout) -> str:
    return json.dumps({**asdict(layout), "root": str(layout.root)}, indent=2) + "\n"


def layout_from_json(text: str) -> ClusterLayout:
    data = json.loads(text)
    nodes = tuple(NodeSpec(**node) for node in data.pop("nodes"))
    return ClusterLayout(**{**data, "root": Path(data["root"]), "nodes": nodes})
