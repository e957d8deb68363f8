"""Loading of the public reference tokenizer checkpoints (infinity_vae_d16 / d24 / d32 / d32reg / d64).

A reference ``.pth`` file holds the autoencoder's state dict under ``"vae"`` (or ``"ema"``);
its keys are ``encoder.*``, ``decoder.*`` and the bit-weight buffer ``quantizer.lfq.mask``,
which is exactly the layout of :class:`BitwiseTokenizer`. The release's class registers its
quantizer twice (``self.quantize = self.quantizer``), so its saved dicts repeat every
``quantizer.*`` entry as ``quantize.*`` (``quantize.lfq.mask``, ``quantize.layernorm.*``): the
copies are checked equal and dropped. Plain state dicts, other wrapper keys ("state_dict",
"model"), DDP/compile prefixes and safetensors files are accepted too.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from infinity_train.state_dict_files import find_state_dict
from infinity_train.tokenizer.bitwise_tokenizer import REG_VARIANT, BitwiseTokenizer

REFERENCE_ARCHITECTURE: dict[str, Any] = {
    "base_channels": 128,
    "channel_multipliers": (1, 2, 4, 4, 4),
    "encoder_res_blocks": 2,
    "decoder_res_blocks": 3,
    "patchify": False,
    "latent_layernorm": False,
}

REFERENCE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "infinity_vae_d16": {"d": 16, "reg": False},
    "infinity_vae_d24": {"d": 24, "reg": False},
    "infinity_vae_d32": {"d": 32, "reg": False},
    "infinity_vae_d32reg": {"d": 32, "reg": True},
    "infinity_vae_d64": {"d": 64, "reg": False},
    # Infinity-8B's tokenizer: stride 8 with 2x2 patchify (56 bits per 16x16-pixel token)
    "infinity_vae_d56_f8_14_patchify": {"d": 14, "reg": False, "channel_multipliers": (1, 2, 4, 4), "patchify": True},
}

_WRAPPER_KEYS = ("vae", "ema", "state_dict", "model")
_MASK_KEY = "quantizer.lfq.mask"
_D_KEY = "encoder.conv_out.conv.weight"
_LAYERNORM_KEY = "quantizer.layernorm.weight"
_SHOWN = 5


def reference_name(name_or_path: str | os.PathLike[str]) -> str | None:
    """Canonical reference name of a name or file path ("infinity_vae_d32_reg.pth" -> "infinity_vae_d32reg")."""
    stem = Path(name_or_path).name.removesuffix(".pth").removesuffix(".safetensors").replace("_reg", "reg")
    return stem if stem in REFERENCE_TOKENIZERS else None


# ---------------------------------------------------------------- reading


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tokenizer state dict inside a ``.pth`` (weights only) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer checkpoint not found: {path}")
    return unwrap_state_dict(read_weights_file(path, map_location))


def read_weights_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """A ``.safetensors`` or weights-only ``.pth`` file; a damaged or refused one is a one-line ValueError naming it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except Exception as error:  # safetensors raises its own error type for a truncated or garbage file
            raise ValueError(f"{path}: damaged safetensors file ({' '.join(str(error).split())[:200]})") from None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        from infinity_train.checkpoint_files import _refusal

        raise ValueError(f"{path}: refused: {_refusal(error)}") from None
    except Exception as error:
        raise ValueError(f"{path}: damaged ({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Find the state dict under the usual wrapper keys and strip DDP / torch.compile prefixes."""
    state = find_state_dict(obj, _WRAPPER_KEYS, "tokenizer checkpoint")
    return _drop_quantizer_alias({_nested_key(key): value for key, value in state.items()})


_ALIAS_PREFIX, _QUANTIZER_PREFIX = "quantize.", "quantizer."


def _drop_quantizer_alias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold the release's duplicate ``quantize.*`` entries into ``quantizer.*`` (equal copies are dropped)."""
    for key in [k for k in state if k.startswith(_ALIAS_PREFIX)]:
        twin = _QUANTIZER_PREFIX + key.removeprefix(_ALIAS_PREFIX)
        alias = state.pop(key)
        if twin not in state:
            state[twin] = alias
        elif state[twin].shape != alias.shape or not torch.equal(state[twin], alias.to(state[twin].dtype)):
            raise ValueError(f"tokenizer checkpoint has {key} and {twin} with different values; the release saves one tensor under both names")
    return state


# Keys saved from plain Conv2d / GroupNorm modules (``...conv1.weight``), which the reference
# loader also accepts, mapped onto the wrapped layout (``...conv1.conv.weight``).
_FLAT_CONV = re.compile(r"^(.*\.(?:conv_in|conv_out|conv1|conv2|nin_shortcut|downsample\.conv|upsample\.conv))\.(weight|bias)$")
_FLAT_NORM = re.compile(r"^(.*\.(?:norm1|norm2|norm_out))\.(weight|bias)$")


def _nested_key(key: str) -> str:
    if m := _FLAT_CONV.match(key):
        return f"{m.group(1)}.conv.{m.group(2)}"
    if m := _FLAT_NORM.match(key):
        return f"{m.group(1)}.norm.{m.group(2)}"
    return key


# ---------------------------------------------------------------- architecture


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state_dict if (m := regex.match(key))})


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Tokenizer constructor arguments (d, base_channels, ...) read off a state dict's shapes."""
    required = (_D_KEY, "encoder.conv_in.conv.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise ValueError(f"not a tokenizer state dict: missing {', '.join(missing)}; first keys: {list(state_dict)[:_SHOWN]}")
    base = state_dict["encoder.conv_in.conv.weight"].shape[0]
    levels = _indices(state_dict, r"encoder\.down\.(\d+)\.")
    widths = [state_dict[f"encoder.down.{i}.block.0.conv1.conv.weight"].shape[0] for i in levels]
    num_down = len(_indices(state_dict, r"encoder\.down\.(\d+)\.downsample\."))
    if num_down not in (3, 4):
        raise ValueError(f"state dict has {num_down} downsamplings; a tokenizer has 4 (stride 16) or 3 (stride 8 + patchify)")
    return {
        "d": state_dict[_D_KEY].shape[0],
        "base_channels": base,
        "channel_multipliers": tuple(w // base for w in widths),
        "encoder_res_blocks": len(_indices(state_dict, r"encoder\.down\.0\.block\.(\d+)\.")),
        "decoder_res_blocks": len(_indices(state_dict, r"decoder\.up\.0\.block\.(\d+)\.")),
        "patchify": num_down == 3,
        "latent_layernorm": _LAYERNORM_KEY in state_dict,
    }


def check_latent_dim_matches(state_dict: Mapping[str, torch.Tensor], expected_d: int, what: str) -> None:
    if _D_KEY not in state_dict:
        raise ValueError(f"not a tokenizer state dict: missing {_D_KEY}")
    found = state_dict[_D_KEY].shape[0]
    if found != expected_d:
        raise ValueError(f"checkpoint has latent dim d={found} but {what} expects d={expected_d}")


# ---------------------------------------------------------------- loading


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN else shown


def load_tokenizer_state(tokenizer: BitwiseTokenizer, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load a (reference-layout) state dict, with clear errors for a wrong d and for
    missing, unexpected or mis-shaped entries."""
    state = unwrap_state_dict(state_dict)
    check_latent_dim_matches(state, tokenizer.d, f"the tokenizer built with d={tokenizer.d}")
    own = tokenizer.state_dict()
    state.setdefault(_MASK_KEY, own[_MASK_KEY])  # derived buffer; absent from encoder/decoder-only files
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise ValueError(f"tokenizer checkpoint does not match {tokenizer.architecture}: " + "; ".join(parts))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if state[k].shape != own[k].shape]
    if mismatched:
        raise ValueError(f"tokenizer checkpoint shapes (found vs expected) differ: {_listing(mismatched)}")
    tokenizer.load_state_dict(state, strict=True)


def load_tokenizer_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> BitwiseTokenizer:
    """Build a tokenizer with the architecture read off the file and load it (a fitted PCA
    tokenizer's file, tensors ``pca.*``, gives a :class:`PcaTokenizer`)."""
    state = read_checkpoint(path, map_location)
    from infinity_train.tokenizer.pca_tokenizer import PcaTokenizer, is_pca_state

    if is_pca_state(state):
        return PcaTokenizer.from_file_state(state)  # type: ignore[return-value]
    tokenizer = BitwiseTokenizer(**infer_architecture(state))
    load_tokenizer_state(tokenizer, state)
    return tokenizer


def load_reference_tokenizer(
    path: str | os.PathLike[str], name: str | None = None, map_location: str | torch.device = "cpu"
) -> BitwiseTokenizer:
    """Load a public reference checkpoint. ``name`` (e.g. "infinity_vae_d32reg") defaults to the
    file name; the file's d and architecture must match that reference model."""
    key = reference_name(name) if name is not None else reference_name(path)
    if key is None:
        raise ValueError(
            f"unknown reference tokenizer {name or Path(path).name!r}; known: {', '.join(REFERENCE_TOKENIZERS)} "
            "(use load_tokenizer_checkpoint for other files)"
        )
    spec = REFERENCE_TOKENIZERS[key]
    state = read_checkpoint(path, map_location)
    check_latent_dim_matches(state, spec["d"], key)
    found = infer_architecture(state)
    expected = {**REFERENCE_ARCHITECTURE, **{k: v for k, v in spec.items() if k != "reg"}}
    if found != expected:
        diff = {k: (found[k], expected[k]) for k in expected if found[k] != expected[k]}
        raise ValueError(f"checkpoint architecture differs from {key} (found, expected): {diff}")
    tokenizer = BitwiseTokenizer(**expected, **(REG_VARIANT if spec["reg"] else {}))
    load_tokenizer_state(tokenizer, state)
    return tokenizer.eval()


def describe_tokenizer_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``infinity-train describe FILE`` prints for a tokenizer checkpoint."""
    state = read_checkpoint(path)
    arch = infer_architecture(state)
    matches = [
        name for name, spec in REFERENCE_TOKENIZERS.items()
        if arch == {**REFERENCE_ARCHITECTURE, **{k: v for k, v in spec.items() if k != "reg"}}
    ]
    return {
        "file": str(path),
        "kind": "tokenizer",
        "architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()},
        "reference_tokenizers_of_this_shape": matches,
        "params": sum(v.numel() for k, v in state.items() if k != _MASK_KEY),
    }
