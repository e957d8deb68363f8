"""Find ``cluster.env_file``: the per-cluster shell file with NCCL and network settings."""

from __future__ import annotations

from pathlib import Path

from infinity_train.config import ConfigError, conf_dir


def resolve_env_file(value: str | None, cwd: Path, project_root: Path | None = None) -> Path | None:
    """An absolute path as is; a relative one in the working directory, else beside the config tree
    (the project checkout: ``conf/cluster/env/...``)."""
    if not value:
        return None
    root = conf_dir().parent if project_root is None else project_root
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [cwd / path, root / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"cluster.env_file={value} not found (looked at {', '.join(map(str, candidates))})")
