"""Reference checkpoint compatibility, checked against a key layout written out independently
from the facts of the public reference tokenizer (not derived from this project's modules)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from infinity_train.tokenizer.bitwise_tokenizer import BitwiseTokenizer
from infinity_train.tokenizer.reference import (
    infer_architecture,
    load_reference_tokenizer,
    load_tokenizer_checkpoint,
    load_tokenizer_state,
    reference_name,
)

from tokenizer_helpers import TINY, tiny_tokenizer


def _res_block(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    keys = {
        f"{prefix}.norm1.norm.weight": (cin,), f"{prefix}.norm1.norm.bias": (cin,),
        f"{prefix}.conv1.conv.weight": (cout, cin, 3, 3), f"{prefix}.conv1.conv.bias": (cout,),
        f"{prefix}.norm2.norm.weight": (cout,), f"{prefix}.norm2.norm.bias": (cout,),
        f"{prefix}.conv2.conv.weight": (cout, cout, 3, 3), f"{prefix}.conv2.conv.bias": (cout,),
    }  # fmt: skip
    if cin != cout:
        keys |= {f"{prefix}.nin_shortcut.conv.weight": (cout, cin, 1, 1), f"{prefix}.nin_shortcut.conv.bias": (cout,)}
    return keys


def _conv(prefix: str, cout: int, cin: int, k: int = 3) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.conv.weight": (cout, cin, k, k), f"{prefix}.conv.bias": (cout,)}


def reference_layout(d: int, ch: int = 128, mult=(1, 2, 4, 4, 4), res_blocks: int = 2, patch: int = 16) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the reference autoencoder (decoder uses res_blocks + 1 blocks per level)."""
    downs = int(math.log2(patch))
    keys = _conv("encoder.conv_in", ch, 3)
    cin = ch
    for i, m in enumerate(mult):
        for j in range(res_blocks):
            keys |= _res_block(f"encoder.down.{i}.block.{j}", cin, ch * m)
            cin = ch * m
        if i < downs:
            keys |= _conv(f"encoder.down.{i}.downsample.conv", cin, cin)
    keys |= _res_block("encoder.mid.block_1", cin, cin) | _res_block("encoder.mid.block_2", cin, cin)
    keys |= {"encoder.norm_out.norm.weight": (cin,), "encoder.norm_out.norm.bias": (cin,)} | _conv("encoder.conv_out", d, cin)
    keys |= _conv("decoder.conv_in", cin, d)
    keys |= _res_block("decoder.mid.block_1", cin, cin) | _res_block("decoder.mid.block_2", cin, cin)
    for i in reversed(range(len(mult))):
        for j in range(res_blocks + 1):
            keys |= _res_block(f"decoder.up.{i}.block.{j}", cin, ch * mult[i])
            cin = ch * mult[i]
        if 1 <= i <= downs:
            keys |= _conv(f"decoder.up.{i}.upsample.conv", cin, cin)
    keys |= {"decoder.norm_out.norm.weight": (cin,), "decoder.norm_out.norm.bias": (cin,)} | _conv("decoder.conv_out", 3, cin)
    keys["quantizer.lfq.mask"] = (d,)
    return keys


SYNTHETIC = {**TINY, "encoder_res_blocks": 1, "decoder_res_blocks": 2}  # the reference decoder has one block more


def synthetic_checkpoint(d: int = 16) -> dict[str, torch.Tensor]:
    """A reference-layout state dict at tiny sizes with random values."""
    generator = torch.Generator().manual_seed(d)
    layout = reference_layout(d, TINY["base_channels"], TINY["channel_multipliers"], res_blocks=1)
    state = {k: torch.randn(shape, generator=generator) for k, shape in layout.items()}
    state["quantizer.lfq.mask"] = 2 ** torch.arange(d - 1, -1, -1)
    return state


@pytest.mark.parametrize("d", [16, 32, 64])
def test_reference_sized_tokenizer_has_the_reference_key_layout(d):
    with torch.device("meta"):
        tokenizer = BitwiseTokenizer(d)
    own = {k: tuple(v.shape) for k, v in tokenizer.state_dict().items()}
    assert own == reference_layout(d)


def test_patchified_tokenizer_has_the_reference_stride8_layout():
    with torch.device("meta"):
        tokenizer = BitwiseTokenizer(32, channel_multipliers=(1, 2, 4, 4), patchify=True)
    own = {k: tuple(v.shape) for k, v in tokenizer.state_dict().items()}
    assert own == reference_layout(32, mult=(1, 2, 4, 4), patch=8)


def test_nested_pth_checkpoint_loads_strictly(tmp_path):
    state = synthetic_checkpoint(16)
    path = tmp_path / "tokenizer.pth"
    torch.save({"vae": state, "discriminator": {"w": torch.zeros(1)}, "step": 10}, path)
    tokenizer = load_tokenizer_checkpoint(path)
    assert tokenizer.architecture == {"d": 16, **SYNTHETIC, "patchify": False, "latent_layernorm": False}
    loaded = tokenizer.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_safetensors_and_flat_conv_keys_load(tmp_path):
    state = synthetic_checkpoint(16)
    flat = {k.replace(".conv.weight", ".weight").replace(".norm.bias", ".bias"): v for k, v in state.items()}
    path = tmp_path / "tokenizer.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in flat.items()}, str(path))
    tokenizer = load_tokenizer_checkpoint(path)
    assert torch.equal(tokenizer.encoder.conv_in.conv.weight, state["encoder.conv_in.conv.weight"])
    assert torch.equal(tokenizer.decoder.norm_out.norm.bias, state["decoder.norm_out.norm.bias"])


def test_checkpoint_with_wrong_d_is_refused(tmp_path):
    path = tmp_path / "infinity_vae_d32.pth"
    torch.save({"vae": synthetic_checkpoint(16)}, path)
    with pytest.raises(ValueError, match="checkpoint has latent dim d=16 but infinity_vae_d32 expects d=32"):
        load_reference_tokenizer(path)  # name taken from the file name
    with pytest.raises(ValueError, match="d=16 but the tokenizer built with d=32 expects d=32"):
        load_tokenizer_state(tiny_tokenizer(32, decoder_res_blocks=2), synthetic_checkpoint(16))


def test_reference_name_with_other_architecture_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"vae": synthetic_checkpoint(16)}, path)
    with pytest.raises(ValueError, match="architecture differs from infinity_vae_d16.*base_channels"):
        load_reference_tokenizer(path, name="infinity_vae_d16")
    with pytest.raises(ValueError, match="unknown reference tokenizer"):
        load_reference_tokenizer(path, name="infinity_vae_d20")


def test_missing_and_unexpected_keys_are_listed():
    state = synthetic_checkpoint(16)
    state.pop("decoder.mid.block_1.conv2.conv.bias")
    state["encoder.extra.conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing keys: decoder.mid.block_1.conv2.conv.bias.*unexpected keys: encoder.extra.conv.weight"):
        load_tokenizer_state(tiny_tokenizer(16, decoder_res_blocks=2), state)
    state = synthetic_checkpoint(16)
    state["decoder.conv_out.conv.bias"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"decoder.conv_out.conv.bias \(4,\) vs \(3,\)"):
        load_tokenizer_state(tiny_tokenizer(16, decoder_res_blocks=2), state)


def test_architecture_is_read_off_the_shapes():
    assert infer_architecture({k: torch.empty(s) for k, s in reference_layout(24).items()}) == {
        "d": 24, "base_channels": 128, "channel_multipliers": (1, 2, 4, 4, 4),
        "encoder_res_blocks": 2, "decoder_res_blocks": 3, "patchify": False, "latent_layernorm": False,
    }  # fmt: skip
    with pytest.raises(ValueError, match="not a tokenizer state dict"):
        infer_architecture({"weight": torch.zeros(1)})


def test_latent_layernorm_uses_the_reference_keys_and_round_trips(tmp_path):
    state = synthetic_checkpoint(16)
    generator = torch.Generator().manual_seed(1)
    state["quantizer.layernorm.weight"] = torch.rand(16, generator=generator)
    state["quantizer.layernorm.bias"] = torch.randn(16, generator=generator)
    path = tmp_path / "tokenizer.safetensors"
    save_file(state, str(path))
    tokenizer = load_tokenizer_checkpoint(path)
    assert tokenizer.architecture["latent_layernorm"] is True
    assert torch.equal(tokenizer.quantizer.layernorm.bias, state["quantizer.layernorm.bias"])
    # a tokenizer without the layer refuses the extra keys instead of dropping them
    with pytest.raises(ValueError, match="unexpected keys: quantizer.layernorm"):
        load_tokenizer_state(tiny_tokenizer(16, decoder_res_blocks=2), state)


def test_reference_names():
    assert reference_name("/ckpt/infinity_vae_d32_reg.pth") == "infinity_vae_d32reg"
    assert reference_name("infinity_vae_d64") == "infinity_vae_d64"
    assert reference_name("my_tokenizer.pth") is None
