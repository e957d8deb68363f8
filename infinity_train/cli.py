"""``infinity-train``: the user-facing command.

    infinity-train describe [key=value ...]   parameter counts and training FLOPs per image (JSON)
    infinity-train describe FILE              which release (or export) a transformer weights file is (JSON)
    infinity-train config   [key=value ...]   the resolved, validated config (YAML)
    infinity-train train    [key=value ...]   train (a tokenizer with task=tokenizer, else the transformer)
    infinity-train sweep    [--plan] [key=value ...]   run a scaling sweep (sweep=...), then fit and report
    infinity-train demo     [key=value ...]   the default CPU sweep (sweep=cpu_small) end to end

Overrides use Hydra syntax (``model=layer24 tokenizer.d=32 data.resolution=256``). A bad key, option
or value exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

from omegaconf import OmegaConf

from infinity_train.config import ConfigError, load_config, to_typed, validate
from infinity_train.sizing import describe_config

USAGE = __doc__ or ""


def _describe(overrides: list[str]) -> int:
    if len(overrides) == 1 and "=" not in overrides[0]:
        return _describe_file(overrides[0])
    cfg = validate(to_typed(load_config(overrides)))
    print(json.dumps(describe_config(cfg), indent=2))
    return 0


def _describe_file(path: str) -> int:
    """A transformer weights file (release or export) or, failing that, a tokenizer checkpoint."""
    from infinity_train.models.reference import ReferenceCheckpointError, describe_weights
    from infinity_train.tokenizer.reference import describe_tokenizer_file

    try:
        description = describe_weights(path)
    except ReferenceCheckpointError as error:
        try:
            description = describe_tokenizer_file(path)
        except Exception:  # not a tokenizer either (safetensors has its own error type): report the first reading
            raise ConfigError(str(error)) from error
    print(json.dumps(description, indent=2))
    return 0


def _config(overrides: list[str]) -> int:
    cfg = load_config(overrides)
    validate(to_typed(cfg))
    print(OmegaConf.to_yaml(cfg, resolve=True), end="")
    return 0


def _train(overrides: list[str]) -> int:
    from infinity_train.train.entry import main as train_main

    return train_main(overrides)


def _sweep(args: list[str]) -> int:
    from infinity_train.sweep.command import run_sweep_command

    return run_sweep_command(args)


def _demo(overrides: list[str]) -> int:
    return _sweep(["sweep=cpu_small", *overrides])


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "describe": _describe,
    "config": _config,
    "train": _train,
    "sweep": _sweep,
    "demo": _demo,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE.strip())
        return 0 if args else 2
    command, overrides = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
