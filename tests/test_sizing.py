import json

import pytest

from infinity_train import geometry
from infinity_train.config import load_config, to_typed
from infinity_train.sizing import TransformerShape, describe, forward_flops_per_image, parameter_counts, shape_from_config

PUBLISHED = {  # DESIGN.md section 4, counted with the 2048-dim text path and d = 32
    "layer12": 125.2e6, "layer16": 361.6e6, "layer24": 940.9e6, "layer32": 2.257e9,
    "layer40": 4.716e9, "layer48": 8.77e9, "2b": 2.205e9, "20b": 19.95e9,
}


@pytest.mark.parametrize("rung, published", PUBLISHED.items())
def test_published_rungs_match_within_half_a_percent(rung, published):
    shape = shape_from_config(to_typed(load_config([f"model={rung}", "tokenizer.d=32"])))
    total = parameter_counts(shape)["total"]
    assert abs(total - published) / published < 0.005, (rung, total)


def test_parts_add_up_and_non_embedding_excludes_embeddings():
    shape = TransformerShape(depth=3, width=192, heads=3, bits=16, text_dim=384, text_max_len=256)
    p = parameter_counts(shape)
    assert p["total"] == p["blocks"] + p["adaln_shared"] + p["text_path"] + p["head"] + p["embeddings"]
    assert p["non_embedding"] == p["total"] - p["embeddings"]
    assert p["blocks"] == 3 * p["per_block"]
    C, hid = 192, 768
    assert p["per_block"] == 8 * C * C + 2 * C * hid + hid + 15 * C + 3


def test_flops_scale_with_depth_and_attention_uses_block_causal_pairs():
    schedule = geometry.scale_schedule(256)
    shallow = forward_flops_per_image(TransformerShape(2, 128, 2, 16, 384, 256), schedule, 32)
    deep = forward_flops_per_image(TransformerShape(4, 128, 2, 16, 384, 256), schedule, 32)
    for part in ("blocks_linear", "self_attention", "cross_attention"):
        assert deep[part] == 2 * shallow[part]
    assert shallow["self_attention"] == 2 * 4 * 128 * geometry.attended_pairs(schedule)
    assert shallow["cross_attention"] == 2 * 4 * 128 * 521 * 32


def test_train_flops_are_three_forwards_and_close_to_6nd():
    shape = TransformerShape(24, 1536, 16, 32, 2048, 512)
    report = describe(shape, 256, 64)
    flops = report["flops_per_image"]
    assert flops["train"] == 3 * flops["forward"]["forward_total"]
    # linear layers dominate at this size: the exact count stays within 15% of 6 N D
    assert 0.85 < flops["train"] / flops["train_6ND_estimate"] < 1.15
    assert report["schedule"]["tokens_per_image"] == 521


def test_describe_cli_published_counts(cli):
    result = cli("infinity_train", "describe", "model=layer24", "tokenizer.d=32")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert abs(report["parameters"]["total"] - 940.9e6) / 940.9e6 < 0.005
    assert report["parameters"]["non_embedding"] < report["parameters"]["total"]
    assert report["flops_per_image"]["train"] > 0
    result = cli("infinity_train", "describe", "model=2b", "data.resolution=1024")
    report = json.loads(result.stdout)
    assert abs(report["parameters"]["total"] - 2.205e9) / 2.205e9 < 0.005
    assert report["schedule"]["tokens_per_image"] == 10521


def test_describe_cli_non_square_and_debug(cli):
    result = cli("infinity_train", "describe", "model=debug2", "data.resolution=128", "data.aspect_ratios=[0.5]")
    report = json.loads(result.stdout)
    assert report["schedule"]["pixels"] == [80, 160]
    assert report["shape"]["width"] == 128 and report["shape"]["text_dim"] == 384
