"""A frozen copy of the project's code and config tree, so later edits do not change a queued job."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from infinity_train.config import conf_dir

PACKAGES = ("infinity_train", "data_pipelines", "analysis", "launch")  # the packages of setup.py
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")


def code_sources() -> dict[str, Path]:
    """Where this process imports the project's packages from, and the config tree it reads
    (a source checkout, an installed copy, or an earlier snapshot alike)."""
    sources: dict[str, Path] = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"cannot snapshot the code: package {name} is not importable")
        sources[name] = Path(spec.origin).parent
    sources["conf"] = conf_dir()
    return sources


def snapshot_code(dest: Path, sources: dict[str, Path] | None = None) -> Path:
    """Copy every source folder to ``dest/<name>`` (``dest`` must not exist yet)."""
    sources = code_sources() if sources is None else sources
    missing = [f"{name} ({path})" for name, path in sources.items() if not path.is_dir()]
    if missing:
        raise FileNotFoundError(f"cannot snapshot the code: {', '.join(missing)} missing")
    dest.mkdir(parents=True)
    for name, path in sources.items():
        shutil.copytree(path, dest / name, ignore=IGNORED, symlinks=True)
    return dest
