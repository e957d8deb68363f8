"""The public Infinity release's transformer checkpoints: read them, convert both ways, say which release a file is.

The release saves ``Infinity.state_dict()`` (``infinity_2b_reg.pth``: a plain dict of bf16 tensors; the 8B
model as a sharded Hugging Face style directory). Its layout differs from ``InfinityTransformer`` in names
only, plus three zero ``zero_k_bias`` buffers and four reshapes:

    release                                   here
    cfg_uncond                                uncond_text
    pos_start / lvl_embed / word_embed        start_pos / scale_embed / word_embed
    text_proj_for_sos.ca.{mat_q,mat_kv,...}   text_pool.{query,kv,...}     mat_q (1, H, c) -> (1, H*c)
    text_proj_for_ca.{0,2}                    text_proj.{0,2}
    shared_ada_lin.1 / head_nm.ada_lin.1      shared_adaln.1 / head_adaln.1
    block_chunks.{c}.module.{j}. or blocks.{i}.   blocks.{c * per_chunk + j}.
      ada_gss (1, 1, 6, C)                      adaln_table (6, C)
      sa.{mat_qkv,q_bias,v_bias,proj}           self_attn.{qkv,q_bias,v_bias,proj}
      sa.scale_mul_1H11 (1, H, 1, 1)            self_attn.logit_scale (H,)
      ca.{mat_q,mat_kv,v_bias,proj}, ca_norm    cross_attn.{q,kv,v_bias,proj}, cross_norm
      ffn.fc1 / ffn.fc2                         ffn.fc1 / ffn.fc2

Only the release's switches are supported (shared AdaLN, AdaLN head of depth 1, no input norm, no
cross-attention layer scale, GELU FFN): a file built otherwise is refused naming the keys that say so.
Files are read with ``torch.load(weights_only=True)`` (or safetensors), never unpickled freely.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from infinity_train.state_dict_files import find_state_dict

REFERENCE_MARKERS = ("cfg_uncond", "pos_start", "lvl_embed.weight")
_WRAPPER_KEYS = ("gpt_ema_fsdp", "gpt_fsdp", "gpt_wo_ddp", "gpt", "trainer", "state_dict", "model", "module")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SHOWN = 5

_GLOBAL_KEYS = {
    "cfg_uncond": "uncond_text",
    "pos_start": "start_pos",
    "lvl_embed.weight": "scale_embed.weight",
    "word_embed.weight": "word_embed.weight",
    "word_embed.bias": "word_embed.bias",
    "text_norm.weight": "text_norm.weight",
    "text_proj_for_sos.ca.mat_q": "text_pool.query",
    "text_proj_for_sos.ca.mat_kv.weight": "text_pool.kv.weight",
    "text_proj_for_sos.ca.v_bias": "text_pool.v_bias",
    "text_proj_for_sos.ca.proj.weight": "text_pool.proj.weight",
    "text_proj_for_sos.ca.proj.bias": "text_pool.proj.bias",
    "text_proj_for_ca.0.weight": "text_proj.0.weight",
    "text_proj_for_ca.0.bias": "text_proj.0.bias",
    "text_proj_for_ca.2.weight": "text_proj.2.weight",
    "text_proj_for_ca.2.bias": "text_proj.2.bias",
    "shared_ada_lin.1.weight": "shared_adaln.1.weight",
    "shared_ada_lin.1.bias": "shared_adaln.1.bias",
    "head_nm.ada_lin.1.weight": "head_adaln.1.weight",
    "head_nm.ada_lin.1.bias": "head_adaln.1.bias",
    "head.weight": "head.weight",
    "head.bias": "head.bias",
}
_BLOCK_KEYS = {
    "ada_gss": "adaln_table",
    "sa.mat_qkv.weight": "self_attn.qkv.weight",
    "sa.q_bias": "self_attn.q_bias",
    "sa.v_bias": "self_attn.v_bias",
    "sa.scale_mul_1H11": "self_attn.logit_scale",
    "sa.proj.weight": "self_attn.proj.weight",
    "sa.proj.bias": "self_attn.proj.bias",
    "ca.mat_q.weight": "cross_attn.q.weight",
    "ca.mat_q.bias": "cross_attn.q.bias",
    "ca.mat_kv.weight": "cross_attn.kv.weight",
    "ca.v_bias": "cross_attn.v_bias",
    "ca.proj.weight": "cross_attn.proj.weight",
    "ca.proj.bias": "cross_attn.proj.bias",
    "ca_norm.weight": "cross_norm.weight",
    "ca_norm.bias": "cross_norm.bias",
    "ffn.fc1.weight": "ffn.fc1.weight",
    "ffn.fc1.bias": "ffn.fc1.bias",
    "ffn.fc2.weight": "ffn.fc2.weight",
    "ffn.fc2.bias": "ffn.fc2.bias",
}
_ZERO_BUFFERS = ("text_proj_for_sos.ca.zero_k_bias",)
_BLOCK_ZERO_BUFFERS = ("sa.zero_k_bias", "ca.zero_k_bias")
_PROJECT_GLOBAL = {v: k for k, v in _GLOBAL_KEYS.items()}
_PROJECT_BLOCK = {v: k for k, v in _BLOCK_KEYS.items()}
_CHUNKED = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.(.+)$")
_FLAT = re.compile(r"^blocks\.(\d+)\.(.+)$")


class ReferenceCheckpointError(ValueError):
    """A transformer checkpoint that cannot be read or does not fit, phrased as one line."""


@dataclass(frozen=True)
class ReferenceArchitecture:
    """What a transformer state dict's shapes say about the model that wrote it."""

    depth: int
    width: int
    heads: int
    bits: int  # bits per token (d, or 4d with a patchified tokenizer)
    text_dim: int
    text_max_len: int
    text_pool_heads: int
    ffn_hidden: int
    max_scales: int
    block_chunks: int  # 0 for a file in this project's layout

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Release:
    """A published size of the release: its model option here and the tokenizer it was trained on."""

    model: str  # this project's `model=` option
    depth: int
    width: int
    heads: int
    bits: int
    tokenizer: str  # this project's `tokenizer=` option
    reference_tokenizer: str  # the release's tokenizer file
    block_chunks: int
    text_dim: int = 2048
    text_max_len: int = 512
    published: bool = True


RELEASES: dict[str, Release] = {
    "infinity_2b": Release("2b", 32, 2048, 16, 32, "d32reg", "infinity_vae_d32reg", 8),
    "infinity_8b": Release("8b", 40, 3584, 28, 56, "d14_patchify", "infinity_vae_d56_f8_14_patchify", 8),
    "infinity_20b": Release("20b", 58, 4608, 36, 32, "d32", "infinity_vae_d32", 2, published=False),
    "infinity_layer12": Release("layer12", 12, 768, 8, 32, "d32", "infinity_vae_d32", 4, published=False),
    "infinity_layer16": Release("layer16", 16, 1152, 12, 32, "d32", "infinity_vae_d32", 4, published=False),
    "infinity_layer24": Release("layer24", 24, 1536, 16, 32, "d32", "infinity_vae_d32", 4, published=False),
    "infinity_layer32": Release("layer32", 32, 2080, 20, 32, "d32", "infinity_vae_d32", 4, published=False),
    "infinity_layer40": Release("layer40", 40, 2688, 24, 32, "d32", "infinity_vae_d32", 4, published=False),
    "infinity_layer48": Release("layer48", 48, 3360, 28, 32, "d32", "infinity_vae_d32", 4, published=False),
}
"""Reference model types (tools/run_infinity.py's ``model_type``); ``published`` where weights were released."""


# ---------------------------------------------------------------- reading


def read_transformer_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The transformer state dict in a ``.pth``/``.bin`` (weights only), a ``.safetensors`` file or a sharded
    directory (``*.index.json`` naming the shard files). Wrapped dicts and DDP/FSDP/compile prefixes are
    unwrapped. Any problem is a one-line ``ReferenceCheckpointError``."""
    path = Path(path)
    if path.is_dir():
        return _read_sharded(path)
    if not path.is_file():
        raise ReferenceCheckpointError(f"transformer checkpoint {path} does not exist")
    return unwrap_state_dict(_read_file(path), path)


def _read_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error type for a damaged file
            raise ReferenceCheckpointError(f"cannot read {path}: {' '.join(str(error).split())}") from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        message = " ".join(str(error).split())
        if "Weights only load failed" in message or "Unsupported global" in message:
            raise ReferenceCheckpointError(
                f"{path} holds Python objects besides tensors, which are never unpickled here; save the model's "
                "state dict alone (e.g. the release's save_slim_model) or convert it to safetensors"
            ) from error
        raise ReferenceCheckpointError(f"cannot read {path}: {message[:300]}") from error


def _read_sharded(directory: Path) -> dict[str, torch.Tensor]:
    index = next((directory / name for name in _INDEX_FILES if (directory / name).is_file()), None)
    if index is None:
        raise ReferenceCheckpointError(f"{directory} is a directory without {' or '.join(_INDEX_FILES)}; pass a checkpoint file or a sharded checkpoint")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as error:
        raise ReferenceCheckpointError(f"{index} is not a shard index (a JSON object with 'weight_map'): {error}") from error
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = directory / shard
        if not shard_path.is_file() or shard_path.resolve().parent != directory.resolve():
            raise ReferenceCheckpointError(f"{index} names shard {shard!r}, which is not a file in {directory}")
        state.update(unwrap_state_dict(_read_file(shard_path), shard_path))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise ReferenceCheckpointError(f"{index} lists {len(missing)} tensors the shards lack: {_listing(missing)}")
    return state


def unwrap_state_dict(obj: Any, source: Path | str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict under the usual wrapper keys (``trainer.gpt_fsdp``, ``state_dict``, ``model``, ...)."""
    return find_state_dict(obj, _WRAPPER_KEYS, f"{source} (a transformer checkpoint)", ReferenceCheckpointError)


def is_reference_layout(state: Mapping[str, Any]) -> bool:
    return any(marker in state for marker in REFERENCE_MARKERS)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN else shown


# ---------------------------------------------------------------- architecture


def _block_index(key: str) -> tuple[int, int, str] | None:
    """(chunk, index in chunk, rest) of a release block key; chunk -1 for the flat ``blocks.{i}`` layout."""
    if m := _CHUNKED.match(key):
        return int(m.group(1)), int(m.group(2)), m.group(3)
    if m := _FLAT.match(key):
        return -1, int(m.group(1)), m.group(2)
    return None


def _shape(state: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ReferenceCheckpointError(f"{source}: not an Infinity transformer state dict (no {key}); first keys: {_listing(sorted(state))}")
    return tuple(state[key].shape)


def reference_architecture(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> ReferenceArchitecture:
    """The architecture a release-layout state dict was built with, read off its shapes."""
    blocks: dict[tuple[int, int], str] = {}
    for key in state:
        found = _block_index(key)
        if found is not None:
            chunk, index, _ = found
            blocks[(chunk, index)] = key
    if not blocks:
        raise ReferenceCheckpointError(f"{source}: no transformer blocks (block_chunks.* or blocks.*) found")
    chunks = sorted({c for c, _ in blocks})
    per_chunk = len({i for _, i in blocks})
    depth = len(blocks)
    if chunks != [-1] and (chunks != list(range(len(chunks))) or depth != len(chunks) * per_chunk):
        raise ReferenceCheckpointError(f"{source}: block chunks are incomplete ({depth} blocks in chunks {chunks[:8]})")
    first = "blocks.0." if chunks == [-1] else "block_chunks.0.module.0."
    width = _shape(state, "word_embed.weight", source)[0]
    heads = _shape(state, first + "sa.scale_mul_1H11", source)
    pool = _shape(state, "text_proj_for_sos.ca.mat_q", source)
    uncond = _shape(state, "cfg_uncond", source)
    return ReferenceArchitecture(
        depth=depth,
        width=width,
        heads=heads[1] if len(heads) == 4 else heads[-1],
        bits=_shape(state, "word_embed.weight", source)[1],
        text_dim=uncond[1],
        text_max_len=uncond[0],
        text_pool_heads=pool[1],
        ffn_hidden=_shape(state, first + "ffn.fc1.weight", source)[0],
        max_scales=_shape(state, "lvl_embed.weight", source)[0],
        block_chunks=1 if chunks == [-1] else len(chunks),
    )


def model_architecture(model: torch.nn.Module) -> ReferenceArchitecture:
    """The same description of an ``InfinityTransformer`` (block_chunks 0: not a release layout)."""
    return ReferenceArchitecture(
        depth=model.depth, width=model.width, heads=model.heads, bits=model.bits, text_dim=model.text_dim,
        text_max_len=model.text_max_len, text_pool_heads=model.text_pool_heads,
        ffn_hidden=model.blocks[0].ffn.fc1.out_features, max_scales=model.max_scales, block_chunks=0,
    )


def identify_release(arch: ReferenceArchitecture) -> str | None:
    """The reference model type (``infinity_2b``, ...) whose shape ``arch`` has, if any."""
    for name, release in RELEASES.items():
        if (arch.depth, arch.width, arch.heads, arch.bits, arch.text_dim) == (
            release.depth, release.width, release.heads, release.bits, release.text_dim,
        ):
            return name
    return None


_COMPARED = ("depth", "width", "heads", "bits", "text_dim", "text_pool_heads", "ffn_hidden", "max_scales")


def architecture_differences(found: ReferenceArchitecture, expected: ReferenceArchitecture) -> list[str]:
    """``name: file X vs model Y`` for every compared field that differs (the text length is handled apart)."""
    return [f"{k}: file {getattr(found, k)} vs model {getattr(expected, k)}" for k in _COMPARED if getattr(found, k) != getattr(expected, k)]


# ---------------------------------------------------------------- conversion


def from_reference(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A release-layout state dict in this project's layout (tensors keep their dtype)."""
    arch = reference_architecture(state, source)
    per_chunk = arch.depth // arch.block_chunks
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        found = _block_index(key)
        if found is not None:
            chunk, index, rest = found
            block = index if chunk < 0 else chunk * per_chunk + index
            if rest in _BLOCK_ZERO_BUFFERS:
                _check_zero(value, key, source)
                continue
            if rest not in _BLOCK_KEYS:
                unknown.append(key)
                continue
            name = _BLOCK_KEYS[rest]
            if rest == "ada_gss":
                value = value.reshape(-1, arch.width)
            elif rest == "sa.scale_mul_1H11":
                value = value.reshape(-1)
            converted[f"blocks.{block}.{name}"] = value
        elif key in _ZERO_BUFFERS:
            _check_zero(value, key, source)
        elif key in _GLOBAL_KEYS:
            converted[_GLOBAL_KEYS[key]] = value.reshape(1, -1) if key == "text_proj_for_sos.ca.mat_q" else value
        else:
            unknown.append(key)
    if unknown:
        raise ReferenceCheckpointError(
            f"{source} has keys outside the release's switches (shared AdaLN, AdaLN head, GELU FFN, no input norm or "
            f"cross-attention scale), which this model cannot hold: {_listing(sorted(unknown))}"
        )
    return converted


def _check_zero(value: torch.Tensor, key: str, source: str) -> None:
    if value.device.type != "meta" and bool(value.float().abs().max() > 0):
        raise ReferenceCheckpointError(f"{source}: buffer {key} should be zero (the release's key bias), found non-zero values")


def to_reference(state: Mapping[str, torch.Tensor], depth: int, text_pool_heads: int, block_chunks: int = 8) -> dict[str, torch.Tensor]:
    """This project's state dict in the release's layout, blocks grouped into ``block_chunks`` chunks
    (``block_chunks=1``: the release's flat ``blocks.{i}``), with its zero key-bias buffers."""
    if block_chunks < 1 or depth % block_chunks:
        raise ValueError(f"block_chunks={block_chunks} must divide depth {depth}")
    per_chunk = depth // block_chunks
    width = state["word_embed.weight"].shape[0]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            block = int(index)
            prefix = f"blocks.{block}." if block_chunks == 1 else f"block_chunks.{block // per_chunk}.module.{block % per_chunk}."
            if rest not in _PROJECT_BLOCK:
                raise ValueError(f"no release name for {key}")
            if rest == "adaln_table":
                value = value.reshape(1, 1, -1, width)
            elif rest == "self_attn.logit_scale":
                value = value.reshape(1, -1, 1, 1)
            elif rest == "self_attn.qkv.weight":
                out[prefix + "sa.zero_k_bias"] = value.new_zeros(width)
                out[prefix + "ca.zero_k_bias"] = value.new_zeros(width)
            out[prefix + _PROJECT_BLOCK[rest]] = value
        elif key in _PROJECT_GLOBAL:
            if key == "text_pool.query":
                value = value.reshape(1, text_pool_heads, -1)
                out["text_proj_for_sos.ca.zero_k_bias"] = value.new_zeros(width)
            out[_PROJECT_GLOBAL[key]] = value
        else:
            raise ValueError(f"no release name for {key}")
    return out


def export_reference(model: torch.nn.Module, block_chunks: int = 8) -> dict[str, torch.Tensor]:
    """An ``InfinityTransformer``'s weights in the release's layout (loadable by the release's code)."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return to_reference(state, model.depth, model.text_pool_heads, block_chunks)


# ---------------------------------------------------------------- loading into a model


def convert_for(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A release-layout state dict converted and checked against ``model``: one line naming every
    difference (d, depth, width, heads, text width, ...) when it does not fit."""
    found = reference_architecture(state, source)
    expected = model_architecture(model)
    differences = architecture_differences(found, expected)
    if found.text_max_len < expected.text_max_len:
        differences.append(f"text_max_len: file {found.text_max_len} rows of unconditional text vs model {expected.text_max_len}")
    if differences:
        release = identify_release(found)
        what = f"{source} ({release})" if release else source
        raise ReferenceCheckpointError(f"{what} does not fit this model: {'; '.join(differences)}")
    converted = from_reference(state, source)
    # the release keeps only as many unconditional rows as the model's text length (its load_state_dict does the same)
    converted["uncond_text"] = converted["uncond_text"][: expected.text_max_len]
    return converted


def load_reference_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> ReferenceArchitecture:
    """Read a release checkpoint and load it into ``model`` (strictly, casting to the model's dtype)."""
    state = read_transformer_weights(path)
    if not is_reference_layout(state):
        raise ReferenceCheckpointError(f"{path} is not in the Infinity release's layout (no cfg_uncond / pos_start)")
    converted = convert_for(model, state, str(path))
    model.load_state_dict(converted, strict=True)
    return reference_architecture(state, str(path))


# ---------------------------------------------------------------- configs for a file


def config_overrides(arch: ReferenceArchitecture) -> list[str]:
    """Hydra overrides that build this architecture here: the release's model option when the shape is a
    known size, else the depth family with the file's width, heads and FFN (the tokenizer and text encoder
    still have to be named: a transformer file does not say which ones it was trained with)."""
    name = identify_release(arch)
    if name is not None:
        release = RELEASES[name]
        overrides = [f"model={release.model}", f"tokenizer={release.tokenizer}"]
    else:
        overrides = [
            "model=family", f"model.depth={arch.depth}", f"model.width={arch.width}", f"model.heads={arch.heads}",
            f"model.mlp_ratio={arch.ffn_hidden / arch.width!r}",
        ]
    return overrides + [f"model.text_pool_heads={arch.text_pool_heads}", f"model.max_scales={arch.max_scales}"]


def describe_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``infinity-train describe FILE`` prints: the layout, the release it is, its shape and size."""
    state = read_transformer_weights(path)
    reference = is_reference_layout(state)
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    if reference:
        arch = reference_architecture(state, str(path))
        params = sum(v.numel() for k, v in state.items() if not k.endswith("zero_k_bias"))
    else:
        arch = _project_architecture(state, str(path), safetensors_metadata(path))
        params = sum(v.numel() for v in state.values())
    name = identify_release(arch)
    return {
        "file": str(path),
        "kind": "transformer",
        "layout": "infinity-release" if reference else "infinity-train",
        "release": name,
        "published_weights": bool(name and RELEASES[name].published),
        "reference_tokenizer": RELEASES[name].reference_tokenizer if name else None,
        "architecture": arch.as_dict(),
        "params": params,
        "dtypes": dtypes,
        "config_overrides": config_overrides(arch),
    }


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file ({} for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise ReferenceCheckpointError(f"cannot read {path}: {' '.join(str(error).split())}") from error


def _project_architecture(state: Mapping[str, torch.Tensor], source: str, metadata: Mapping[str, str]) -> ReferenceArchitecture:
    """The architecture of a state dict in this project's layout (an ``export/model.safetensors``, whose
    metadata records the text-pool heads that its shapes do not show)."""
    missing = [k for k in ("word_embed.weight", "uncond_text", "text_pool.query", "blocks.0.self_attn.logit_scale") if k not in state]
    if missing:
        raise ReferenceCheckpointError(f"{source} is neither an Infinity release checkpoint nor an infinity-train export (no {', '.join(missing)})")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    width, bits = state["word_embed.weight"].shape
    return ReferenceArchitecture(
        depth=depth, width=width, heads=state["blocks.0.self_attn.logit_scale"].shape[0], bits=bits,
        text_dim=state["uncond_text"].shape[1], text_max_len=state["uncond_text"].shape[0],
        text_pool_heads=int(metadata.get("text_pool_heads", 0)), ffn_hidden=state["blocks.0.ffn.fc1.weight"].shape[0],
        max_scales=state["scale_embed.weight"].shape[0], block_chunks=0,
    )
