"""The public Infinity release as ground truth: golden numbers its own code produced (tests/golden/README.md)
against this project's model, sampler, self-correction inputs, tokenizer and checkpoint converter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infinity_train import geometry
from infinity_train.models.infinity import InfinityTransformer
from infinity_train.models.reference import (
    RELEASES,
    ReferenceCheckpointError,
    convert_for,
    from_reference,
    identify_release,
    read_transformer_weights,
    reference_architecture,
    to_reference,
)
from infinity_train.models.rope import rope_reference_grid, scale_positions
from infinity_train.models.sampling import generate_bits
from infinity_train.tokenizer import load_tokenizer_checkpoint
from infinity_train.train.self_correction import bitwise_self_correction

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "reference_infinity"
FACTS = json.loads((GOLDEN / "reference_facts.json").read_text())
SCHEDULE = geometry.scale_schedule(256, 1.0)  # the release's "0.06M" 1:1 schedule, 7 scales, 521 tokens
CFG = 3.0
LOGIT_ATOL = 1e-5


def tiny_model(text_dim: int, **kwargs) -> InfinityTransformer:
    return InfinityTransformer(96, 2, 6, 16, text_dim, 64, cond_drop=0.0, **kwargs).eval()


def load_tiny(text_dim: int, **kwargs) -> tuple[InfinityTransformer, dict[str, torch.Tensor]]:
    model = tiny_model(text_dim, **kwargs)
    model.load_state_dict(convert_for(model, read_transformer_weights(GOLDEN / f"infinity_t{text_dim}.safetensors")), strict=True)
    return model, load_file(str(GOLDEN / f"infinity_t{text_dim}_golden.safetensors"))


def golden_text(golden: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    cu = golden["text_cu_seqlens"]
    return golden["text_tokens"], cu, int((cu[1:] - cu[:-1]).max())


@pytest.fixture(scope="module")
def tokenizer_golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "tokenizer_golden.safetensors"))


# ---------------------------------------------------------------- the transformer


@pytest.mark.parametrize("text_dim", [256, 512])
def test_teacher_forcing_logits_match_the_release(text_dim, tokenizer_golden):
    model, golden = load_tiny(text_dim)
    assert model.text_pool_heads == text_dim // 128 != model.heads  # the release's pool-head rule is exercised
    with torch.no_grad():
        cond = model(tokenizer_golden["tf_inputs"], golden_text(golden), SCHEDULE).flatten(-2)
        uncond = model(tokenizer_golden["tf_inputs"], golden_text(golden), SCHEDULE, force_uncond=True).flatten(-2)
    assert (cond - golden["logits_cond"]).abs().max() <= LOGIT_ATOL
    assert (uncond - golden["logits_uncond"]).abs().max() <= LOGIT_ATOL


@pytest.mark.parametrize("text_dim", [256, 512])
def test_greedy_cfg_sampling_gives_the_release_bits(text_dim):
    model, golden = load_tiny(text_dim)
    generated = generate_bits(model, golden_text(golden), SCHEDULE, cfg=CFG, tau=1.0, top_k=1, generator=0, return_logits=True)
    for k, (bits, logits) in enumerate(zip(generated.bits, generated.logits)):
        assert torch.equal(bits.to(torch.uint8), golden[f"sample_bits/{k}"]), f"scale {k}"
        raw = golden[f"sample_logits/{k}"].unflatten(-1, (16, 2))  # (2B, l, d, 2): the release's cached forward
        guided = CFG * raw[:2] + (1 - CFG) * raw[2:]
        assert (logits - guided).abs().max() <= LOGIT_ATOL * CFG, f"scale {k}"


@pytest.mark.parametrize("change", [{"input_resampling": "area"}, {"text_pool_heads": 6}])
def test_the_golden_comparison_detects_each_former_difference(change, tokenizer_golden):
    """The golden numbers are sensitive: area resampling or model-head pooling (this project's former
    choices) move the logits by far more than the tolerance."""
    model, golden = load_tiny(256)
    changed = tiny_model(256, **change)
    changed.load_state_dict(model.state_dict())  # same weights, the former function
    with torch.no_grad():
        if "input_resampling" in change:
            generated = generate_bits(changed, golden_text(golden), SCHEDULE, cfg=CFG, top_k=1, generator=0, return_logits=True)
            raw = golden["sample_logits/6"].unflatten(-1, (16, 2))
            error = (generated.logits[6] - (CFG * raw[:2] + (1 - CFG) * raw[2:])).abs().max()
        else:
            error = (changed(tokenizer_golden["tf_inputs"], golden_text(golden), SCHEDULE).flatten(-2) - golden["logits_cond"]).abs().max()
    assert error > 1e-2


def test_self_correction_inputs_and_labels_match_the_release(tokenizer_golden):
    """The release's BitwiseSelfCorrection.flip_requant without noise: inputs are the running sum of codes
    resampled bilinearly ('trilinear' on 5-D) to each next scale; labels the residual's bits."""
    plain = bitwise_self_correction(tokenizer_golden["tf_latent"], SCHEDULE, 0.0, 0)
    assert (plain.inputs - tokenizer_golden["tf_inputs"]).abs().max() <= 1e-6
    assert torch.equal(plain.flat_labels.to(torch.uint8), tokenizer_golden["tf_labels"])


# ---------------------------------------------------------------- the tokenizer


def test_release_tokenizer_state_dict_loads_and_gives_its_bits_and_image(tokenizer_golden):
    """The release's class saves its quantizer twice (quantize.* = quantizer.*): the file loads as saved."""
    raw = torch.load(GOLDEN / "vae_d16.pth", weights_only=True)["vae"]
    assert "quantize.lfq.mask" in raw and "quantizer.lfq.mask" in raw
    tokenizer = load_tokenizer_checkpoint(GOLDEN / "vae_d16.pth").eval()
    image = tokenizer_golden["image_128_uint8"].float() / 127.5 - 1
    schedule = geometry.scale_schedule(128, 1.0)
    with torch.no_grad():
        bits = tokenizer.image_to_bits(image, schedule)
        decoded = tokenizer.bits_to_image(bits, schedule)
    for k, scale_bits in enumerate(bits):
        assert torch.equal(scale_bits.to(torch.uint8), tokenizer_golden[f"vae_bits/{k}"]), f"scale {k}"
    assert (decoded - tokenizer_golden["vae_decoded"]).abs().max() <= 2e-5


def test_unequal_quantizer_copies_are_refused(tmp_path):
    raw = torch.load(GOLDEN / "vae_d16.pth", weights_only=True)
    raw["vae"]["quantize.lfq.mask"] = raw["vae"]["quantize.lfq.mask"] + 1
    torch.save(raw, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="quantize.lfq.mask and quantizer.lfq.mask with different values"):
        load_tokenizer_checkpoint(tmp_path / "bad.pth")


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("ratio", sorted(FACTS["rope_positions"], key=float))
def test_rope_positions_match_the_release_for_every_template(ratio):
    facts = FACTS["rope_positions"][ratio]
    schedule = tuple(tuple(hw) for hw in facts["scales"])
    assert geometry.TEMPLATES[geometry.resolve_template(float(ratio))] == schedule
    for count in (7, 10, 12, 13):  # the release's 0.06M / 0.25M / 0.60M / 1M prefixes find their template's grid
        assert rope_reference_grid(schedule[:count]) == schedule[-1]
    positions = scale_positions(schedule, rope_reference_grid(schedule))
    start = 0
    for (h, w), expected in zip(schedule, facts["positions"]):
        grid = positions[start : start + h * w].view(h, w, 2)
        assert grid[:, 0, 0].tolist() == expected["rows"] and grid[0, :, 1].tolist() == expected["cols"], (h, w)
        start += h * w


def test_template_keys_and_nearest_template_match_the_release():
    assert sorted(FACTS["templates"]["keys"]) == list(geometry.ASPECT_RATIOS)  # 0.666 for 1:1.5, as the release truncates
    for probe, expected in FACTS["templates"]["nearest"].items():
        assert geometry.nearest_template(float(probe)) == expected, probe
    assert geometry.resolve_template(0.666) == geometry.resolve_template(0.667) == 0.666


# ---------------------------------------------------------------- checkpoint conversion


def _meta_state(keys: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


@pytest.mark.parametrize("name", sorted(FACTS["releases"]))
def test_released_sizes_convert_both_ways_without_missing_or_unexpected_keys(name):
    facts = FACTS["releases"][name]
    switches = facts["switches"]
    release_state = _meta_state(facts["keys"])
    arch = reference_architecture(release_state)
    bits = switches["d"] * (4 if switches["apply_spatial_patchify"] else 1)
    assert (arch.depth, arch.width, arch.heads, arch.bits, arch.block_chunks) == (
        switches["depth"], switches["embed_dim"], switches["num_heads"], bits, switches["block_chunks"],
    )
    with torch.device("meta"):
        model = InfinityTransformer(arch.width, arch.depth, arch.heads, arch.bits, 2048, 512, max_scales=arch.max_scales)
    assert sum(p.numel() for p in model.parameters()) == facts["params"]
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted = convert_for(model, release_state, name)
    assert {k: tuple(v.shape) for k, v in converted.items()} == own
    back = to_reference(converted, arch.depth, arch.text_pool_heads, arch.block_chunks)
    assert {k: list(v.shape) for k, v in back.items()} == facts["keys"]
    expected_release = {"2b": "infinity_2b", "8b": "infinity_8b", "20b": "infinity_20b"}.get(name)
    assert identify_release(arch) == expected_release


@pytest.mark.parametrize("chunks", [1, 2])
def test_tiny_release_file_round_trips_losslessly(chunks):
    release_state = read_transformer_weights(GOLDEN / "infinity_t256.safetensors")
    project = from_reference(release_state)
    back = to_reference(project, depth=2, text_pool_heads=2, block_chunks=chunks)
    if chunks == 2:
        assert back.keys() == release_state.keys()
    assert all(torch.equal(from_reference(back)[k], v) for k, v in project.items())
    assert all(torch.equal(back[k], release_state[k]) for k in back.keys() & release_state.keys())


def test_a_file_of_another_shape_fails_with_one_line_naming_what_differs():
    model = InfinityTransformer(96, 2, 6, 32, 512, 64)
    with pytest.raises(ReferenceCheckpointError) as error:
        convert_for(model, read_transformer_weights(GOLDEN / "infinity_t256.safetensors"), "t256")
    message = str(error.value)
    assert "\n" not in message
    assert "bits: file 16 vs model 32" in message and "text_dim: file 256 vs model 512" in message
    assert "text_pool_heads: file 2 vs model 4" in message


def test_release_table_matches_the_reference_shapes():
    for name, release in RELEASES.items():
        assert release.width % release.heads == 0 and (release.width // release.heads) % 4 == 0, name
    assert RELEASES["infinity_2b"].model == "2b" and RELEASES["infinity_8b"].bits == 56
    assert math.isclose(FACTS["releases"]["8b_d32"]["params"], 8_375_533_728)
