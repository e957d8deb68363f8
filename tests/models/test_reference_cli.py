"""Release checkpoints through the real commands: ``infinity-sample --checkpoint <release file>``,
``infinity-train describe FILE``, sharded directories and one-line refusals of files that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from infinity_train.cli import main as train_cli
from infinity_train.models.reference import ReferenceCheckpointError, read_transformer_weights
from infinity_train.sample_command import main as sample_cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "reference_infinity"
PROMPTS = ["a red cube left of a blue sphere", "two small green cones"]  # the prompts the golden bits were sampled for


def sample_release(tmp_path: Path, text_dim: int, *extra: str, checkpoint: Path | None = None) -> int:
    checkpoint = checkpoint or GOLDEN / f"infinity_t{text_dim}.safetensors"
    return sample_cli([
        "--checkpoint", str(checkpoint), "--tokenizer", str(GOLDEN / "vae_d16.pth"),
        "--set", "model.text_encoder.name=tiny-t5", f"model.text_encoder.dim={text_dim}",
        "--prompts", *PROMPTS, "--cfg", "3", "--top-k", "1", "--per-prompt", "1", "--resolution", "256", "--seed", "0",
        "--out", str(tmp_path / "grid.png"), "--device", "cpu", *extra,
    ])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("text_dim", [256, 512])
def test_infinity_sample_on_a_release_checkpoint_gives_the_release_bits(tmp_path, text_dim):
    bits_file = tmp_path / "bits.safetensors"
    assert sample_release(tmp_path, text_dim, "--save-bits", str(bits_file)) == 0
    sampled, golden = load_file(str(bits_file)), load_file(str(GOLDEN / f"infinity_t{text_dim}_golden.safetensors"))
    assert len(sampled) == 7
    for k in range(7):
        assert torch.equal(sampled[f"bits/{k}"], golden[f"sample_bits/{k}"]), f"scale {k}"
    assert (tmp_path / "grid.png").is_file()


def test_a_release_checkpoint_in_pth_form_with_a_wrapper_samples_the_same(tmp_path):
    state = {k: v.to(torch.bfloat16) if k == "cfg_uncond" else v for k, v in load_file(str(GOLDEN / "infinity_t256.safetensors")).items()}
    torch.save({"trainer": {"gpt_fsdp": {f"module.{k}": v for k, v in state.items()}}}, tmp_path / "wrapped.pth")
    assert sample_release(tmp_path, 256, "--save-bits", str(tmp_path / "a.safetensors"), checkpoint=tmp_path / "wrapped.pth") == 0
    assert sample_release(tmp_path, 256, "--save-bits", str(tmp_path / "b.safetensors")) == 0
    assert load_file(str(tmp_path / "a.safetensors")).keys() == load_file(str(tmp_path / "b.safetensors")).keys()


def test_a_release_checkpoint_needs_a_tokenizer(tmp_path, capsys):
    argv = ["--checkpoint", str(GOLDEN / "infinity_t256.safetensors"), "--prompts", "x", "--out", str(tmp_path / "g.png")]
    assert sample_cli(argv) == 2
    assert "a release checkpoint needs --tokenizer" in one_line_error(capsys)


def test_a_text_encoder_of_another_width_is_named(tmp_path, capsys):
    assert sample_release(tmp_path, 256, checkpoint=GOLDEN / "infinity_t512.safetensors") == 2
    message = one_line_error(capsys)
    assert "has a 512-dim text path but model.text_encoder (tiny-t5) is 256-dim" in message


def test_a_config_that_does_not_fit_the_release_file_names_the_difference(tmp_path, capsys):
    assert sample_release(tmp_path, 256, "--set", "model.heads=4") == 2  # the file has 6 heads
    assert "does not fit this model: heads: file 6 vs model 4" in one_line_error(capsys)


@pytest.mark.parametrize("content, expected", [
    (b"not a checkpoint at all", "cannot read"),
    (None, "holds Python objects besides tensors, which are never unpickled here"),
])
def test_unreadable_or_object_holding_files_are_refused_in_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "model.pth"
    if content is None:
        torch.save({"args": Path("/somewhere"), "state_dict": {"w": torch.zeros(1)}}, path)  # a pickled object
    else:
        path.write_bytes(content)
    assert sample_release(tmp_path, 256, checkpoint=path) == 2
    assert expected in one_line_error(capsys)


def test_sharded_directories_read_like_one_file(tmp_path):
    state = load_file(str(GOLDEN / "infinity_t256.safetensors"))
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(tmp_path / name))
    index = {"metadata": {}, "weight_map": {k: name for name, part in halves.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    read = read_transformer_weights(tmp_path)
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    bits = tmp_path / "bits.safetensors"
    assert sample_release(tmp_path, 256, "--save-bits", str(bits), checkpoint=tmp_path) == 0
    golden = load_file(str(GOLDEN / "infinity_t256_golden.safetensors"))
    assert all(torch.equal(load_file(str(bits))[f"bits/{k}"], golden[f"sample_bits/{k}"]) for k in range(7))

    index["weight_map"][keys[0]] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ReferenceCheckpointError, match="names shard '../elsewhere.safetensors', which is not a file in"):
        read_transformer_weights(tmp_path)


def test_describe_says_what_a_file_is(capsys):
    assert train_cli(["describe", str(GOLDEN / "infinity_t256.safetensors")]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "transformer" and described["layout"] == "infinity-release" and described["release"] is None
    assert described["architecture"]["text_pool_heads"] == 2 and described["params"] == 538_028
    assert "model.text_pool_heads=2" in described["config_overrides"]
    assert train_cli(["describe", str(GOLDEN / "vae_d16.pth")]) == 0
    tokenizer = json.loads(capsys.readouterr().out)
    assert tokenizer["kind"] == "tokenizer" and tokenizer["architecture"]["d"] == 16


def test_describe_of_a_missing_or_foreign_file_is_one_line(tmp_path, capsys):
    assert train_cli(["describe", str(tmp_path / "nothing.pth")]) == 2
    assert "does not exist" in one_line_error(capsys)
    (tmp_path / "notes.safetensors").write_bytes(b"\x00" * 16)
    assert train_cli(["describe", str(tmp_path / "notes.safetensors")]) == 2
    assert "cannot read" in one_line_error(capsys)
