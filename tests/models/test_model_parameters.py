"""The module's parameters follow the documented structure exactly (the analytic counter relies on it), and every
configured rung built by ``build_transformer`` has the size ``describe_config`` reports."""

from __future__ import annotations

import pytest
import torch

from infinity_train.build import build_transformer
from infinity_train.config import conf_dir, load_config, to_typed, validate
from infinity_train.models.infinity import InfinityTransformer, ffn_hidden_width
from infinity_train.sizing import TransformerShape, describe_config, parameter_counts


def expected_block(C: int, H: int, hid: int) -> int:
    return 8 * C * C + 2 * C * hid + hid + 15 * C + H


def expected_total(C: int, depth: int, H: int, d: int, Dt: int, T: int, S: int = 15, mlp_ratio: float = 4.0) -> int:
    hid = round(mlp_ratio * C / 256) * 256
    return (
        d * C + C + C + S * C + T * Dt + Dt
        + (C + 2 * C * Dt + C + C * C + C)
        + (Dt * C + C + C * C + C)
        + (6 * C * C + 6 * C)
        + depth * expected_block(C, H, hid)
        + (2 * C * C + 2 * C)
        + (2 * d * C + 2 * d)
    )


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


TINY = [  # width, depth, heads, bits, text_dim, text_max_len, mlp_ratio
    (64, 1, 1, 16, 32, 8, 4.0),
    (128, 2, 2, 32, 48, 16, 4.0),
    (192, 3, 3, 8, 64, 5, 4.0),
    (128, 2, 4, 16, 32, 7, 2.5),
]


@pytest.mark.parametrize("C, depth, H, d, Dt, T, ratio", TINY)
def test_numel_matches_formula_for_tiny_configs(C, depth, H, d, Dt, T, ratio):
    model = InfinityTransformer(C, depth, H, d, Dt, T, mlp_ratio=ratio, text_pool_heads=H)
    assert numel(model) == expected_total(C, depth, H, d, Dt, T, mlp_ratio=ratio)
    assert numel(model.blocks[0]) == expected_block(C, H, ffn_hidden_width(C, ratio))
    shape = TransformerShape(depth=depth, width=C, heads=H, bits=d, text_dim=Dt, text_max_len=T, mlp_ratio=ratio)
    assert parameter_counts(shape)["total"] == numel(model)


def test_parameter_structure_names_and_shapes():
    C, H, d, Dt, T = 64, 2, 8, 32, 6
    shapes = {name: tuple(p.shape) for name, p in InfinityTransformer(C, 1, H, d, Dt, T, text_pool_heads=H).named_parameters()}
    hid = ffn_hidden_width(C)
    expected = {
        "word_embed.weight": (C, d), "word_embed.bias": (C,),
        "start_pos": (1, 1, C), "scale_embed.weight": (15, C), "uncond_text": (T, Dt), "text_norm.weight": (Dt,),
        "text_pool.query": (1, C), "text_pool.kv.weight": (2 * C, Dt), "text_pool.v_bias": (C,),
        "text_pool.proj.weight": (C, C), "text_pool.proj.bias": (C,),
        "text_proj.0.weight": (C, Dt), "text_proj.0.bias": (C,), "text_proj.2.weight": (C, C), "text_proj.2.bias": (C,),
        "shared_adaln.1.weight": (6 * C, C), "shared_adaln.1.bias": (6 * C,),
        "blocks.0.adaln_table": (6, C),
        "blocks.0.self_attn.qkv.weight": (3 * C, C), "blocks.0.self_attn.q_bias": (C,), "blocks.0.self_attn.v_bias": (C,),
        "blocks.0.self_attn.logit_scale": (H,), "blocks.0.self_attn.proj.weight": (C, C), "blocks.0.self_attn.proj.bias": (C,),
        "blocks.0.cross_norm.weight": (C,), "blocks.0.cross_norm.bias": (C,),
        "blocks.0.cross_attn.q.weight": (C, C), "blocks.0.cross_attn.q.bias": (C,), "blocks.0.cross_attn.kv.weight": (2 * C, C),
        "blocks.0.cross_attn.v_bias": (C,), "blocks.0.cross_attn.proj.weight": (C, C), "blocks.0.cross_attn.proj.bias": (C,),
        "blocks.0.ffn.fc1.weight": (hid, C), "blocks.0.ffn.fc1.bias": (hid,), "blocks.0.ffn.fc2.weight": (C, hid), "blocks.0.ffn.fc2.bias": (C,),
        "head_adaln.1.weight": (2 * C, C), "head_adaln.1.bias": (2 * C,), "head.weight": (2 * d, C), "head.bias": (2 * d,),
    }
    assert shapes == expected


def test_no_persistent_buffers():
    assert list(InfinityTransformer(64, 1, 1, 8, 32, 4, text_pool_heads=1).state_dict()) == [n for n, _ in InfinityTransformer(64, 1, 1, 8, 32, 4, text_pool_heads=1).named_parameters()]


def test_released_2b_shape_on_meta_device():
    with torch.device("meta"):
        model = InfinityTransformer(2048, 32, 16, 32, 2048, 512)
    assert next(model.parameters()).is_meta
    assert expected_total(2048, 32, 16, 32, 2048, 512) == 2_204_564_032
    assert numel(model) == 2_204_564_032


@pytest.mark.parametrize(
    "depth, C, H, millions",
    [(12, 768, 8, 125.2), (16, 1152, 12, 361.6), (24, 1536, 16, 940.9), (32, 2080, 20, 2256.7), (40, 2688, 24, 4716.4), (48, 3360, 28, 8767.2)],
)
def test_model_ladder_matches_published_sizes(depth, C, H, millions):
    with torch.device("meta"):
        model = InfinityTransformer(C, depth, H, 32, 2048, 512)
    assert round(numel(model) / 1e6, 1) == pytest.approx(millions, abs=0.051)


# ---------------------------------------------------------------- every configured rung, built from its config

DEBUG_RUNGS = sorted(path.stem for path in (conf_dir() / "model").glob("debug*.yaml"))
LARGE_RUNGS = {  # option -> published parameters (millions) at tokenizer d=32 (DESIGN.md section 4)
    "layer12": 125.2, "layer16": 361.6, "layer24": 940.9, "layer32": 2257.0, "layer40": 4716.0, "layer48": 8770.0, "2b": 2205.0, "20b": 19950.0,
}


def rung_config(name: str, *overrides: str):
    return validate(to_typed(load_config([f"model={name}", *overrides])))


def test_the_debug_rungs_are_found():
    assert {"debug1", "debug2", "debug4", "debug8"} <= set(DEBUG_RUNGS)


@pytest.mark.parametrize("name", DEBUG_RUNGS)
def test_built_debug_rung_matches_describe(name):
    cfg = rung_config(name)
    model = build_transformer(cfg, device="cpu")
    assert numel(model) == describe_config(cfg)["parameters"]["total"]
    assert (model.depth, model.width, model.heads) == (cfg.model.depth, 64 * cfg.model.depth, cfg.model.depth)


@pytest.mark.parametrize("name", sorted(LARGE_RUNGS))
def test_built_large_rung_matches_describe_and_published_size(name):
    cfg = rung_config(name, "tokenizer=d32")
    model = build_transformer(cfg, device=torch.device("meta"))
    assert next(model.parameters()).is_meta
    assert numel(model) == describe_config(cfg)["parameters"]["total"]
    assert numel(model) / 1e6 == pytest.approx(LARGE_RUNGS[name], rel=6e-4)
