"""Compose the run configuration from ``conf/`` and command-line overrides.

Composition errors from Hydra/OmegaConf (a misspelled key, an unknown group option, a value of the
wrong type) are turned into a ``ConfigError`` with a single line that names the problem.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from infinity_train.config.schema import TrainConfig

CONF_ENV = "INFINITY_TRAIN_CONF"


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


def register_schema() -> None:
    ConfigStore.instance().store(name="base_train", node=TrainConfig)


def conf_dir() -> Path:
    """The config tree: $INFINITY_TRAIN_CONF when set, else the source checkout's conf/, else the
    copy installed under <prefix>/share/infinity_train/conf."""
    if os.environ.get(CONF_ENV):
        chosen = Path(os.environ[CONF_ENV])
        if not (chosen / "config.yaml").is_file():
            raise ConfigError(f"{CONF_ENV}={chosen} has no config.yaml")
        return chosen
    candidates = [Path(__file__).resolve().parents[2] / "conf", Path(sys.prefix) / "share" / "infinity_train" / "conf"]
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"no config tree found (looked in {', '.join(map(str, candidates))}); set {CONF_ENV}")


_NOISE_PREFIXES = (
    "full_key:", "object_type=", "reference_type=", "To append", "Set the environment",
    "Config search path", "provider=", "See https",
)


def one_line(error: BaseException) -> str:
    """Hydra/OmegaConf messages span lines and chain causes; keep the lines that name the problem."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for line in str(current).splitlines():
            line = line.strip()
            if not line or "$VALUE" in line or line.startswith(_NOISE_PREFIXES):
                continue
            if line not in parts:
                parts.append(line)
        current = current.__cause__ or current.__context__
    return " ".join(parts) or type(error).__name__


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` (Hydra override syntax)."""
    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir()), job_name="infinity_train"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except ConfigError:
        raise
    except Exception as error:  # Hydra raises several unrelated exception types for bad overrides
        message = one_line(error)
        if any(hint in message for hint in ("mismatched input", "token recognition error", "no viable alternative")):
            message += " (quote values holding braces, spaces or other special characters: key='value')"
        raise ConfigError(message) from error
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_readonly(cfg, False)
    return cfg


def unknown_keys(node: Any, schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of ``node`` that the dataclass ``schema`` does not declare (``+foo=bar`` adds such a key)."""
    if not isinstance(node, DictConfig) or not dataclasses.is_dataclass(schema):
        return []
    hints = typing.get_type_hints(schema)
    found = []
    for key in node.keys():
        name = f"{prefix}{key}"
        if key not in hints:
            found.append(name)
            continue
        child_type = hints[key]
        if dataclasses.is_dataclass(child_type):
            found += unknown_keys(node._get_node(key), child_type, f"{name}.")
    return found


def to_typed(cfg: DictConfig) -> TrainConfig:
    """The composed config as its dataclass (enums as enums), for code that reads it. A key the schema does
    not declare is refused (it would be ignored silently)."""
    unknown = unknown_keys(cfg, TrainConfig)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)} (not in the schema, infinity_train/config/schema.py; check the spelling)")
    try:
        typed = OmegaConf.to_object(cfg)
    except Exception as error:
        raise ConfigError(one_line(error)) from error
    assert isinstance(typed, TrainConfig)
    return typed
