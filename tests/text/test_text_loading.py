"""Loading pretrained encoders from disk: local directories, the Hugging Face cache, and the fast errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import T5ForConditionalGeneration

from infinity_train.text import KNOWN_TEXT_ENCODERS, TextEncoder, build_byte_tokenizer, build_tiny_t5, minilm_package_dir
from infinity_train.text.tiny_t5 import tiny_t5_config

CAPTIONS = ["a watercolor fox", "", "city at night"]


@pytest.fixture
def saved_tiny_t5(tmp_path: Path) -> tuple[Path, TextEncoder]:
    """A tiny T5 encoder + tokenizer written by save_pretrained, and the in-memory encoder it came from."""
    model, tokenizer = build_tiny_t5(seed=1)
    directory = tmp_path / "tiny-t5"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, TextEncoder(model, tokenizer, max_length=64)


def test_saved_t5_directory_loads_through_the_t5_path(saved_tiny_t5, no_network: None) -> None:
    directory, original = saved_tiny_t5
    loaded = TextEncoder.from_config("t5", path=directory)
    assert type(loaded.model).__name__ == "T5EncoderModel"
    assert loaded.hidden_dim == 64 and loaded.max_length == 64  # from the saved tokenizer's model_max_length
    expected = original.encode(CAPTIONS)
    got = loaded.encode(CAPTIONS)
    assert torch.equal(got.cu_seqlens, expected.cu_seqlens)
    torch.testing.assert_close(got.tokens, expected.tokens, rtol=0, atol=1e-6)


def test_full_encoder_decoder_checkpoint_loads_as_encoder(tmp_path: Path, no_network: None) -> None:
    # Flan-T5 checkpoints hold the whole encoder-decoder; only the encoder is kept.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        full = T5ForConditionalGeneration(tiny_t5_config()).eval()
    full.save_pretrained(tmp_path)
    build_byte_tokenizer().save_pretrained(tmp_path)
    loaded = TextEncoder.from_config("t5", path=str(tmp_path), max_length=16)
    packed = loaded.encode(["hello"])
    input_ids = loaded.tokenizer(["hello"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = full.get_encoder()(input_ids=input_ids).last_hidden_state[0]
    torch.testing.assert_close(packed.tokens, expected, rtol=0, atol=1e-6)


def test_cached_repo_id_resolves_from_the_hub_cache(saved_tiny_t5, empty_hub_cache: Path, no_network: None) -> None:
    directory, original = saved_tiny_t5
    repo = empty_hub_cache / "models--example--tiny-t5"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in directory.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = TextEncoder.from_config("t5", path="example/tiny-t5")
    torch.testing.assert_close(loaded.encode(CAPTIONS).tokens, original.encode(CAPTIONS).tokens, rtol=0, atol=1e-6)


def test_missing_local_path_fails_fast_and_names_it(tmp_path: Path, no_network: None) -> None:
    missing = tmp_path / "no-such-model"
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="no-such-model.*does not exist.*path="):
        TextEncoder.from_config("flan-t5-xl", path=missing)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("name, path, repo_id", [
    ("flan-t5-xl", None, "google/flan-t5-xl"),
    ("auto", "infinity-train-tests/never-published", "infinity-train-tests/never-published"),
])
def test_uncached_hub_name_fails_fast_without_network(name, path, repo_id, empty_hub_cache, no_network) -> None:
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="nor in the Hugging Face cache") as error:
        TextEncoder.from_config(name, path=path)
    assert time.monotonic() - start < 10
    assert repo_id in str(error.value) and f"hf download {repo_id}" in str(error.value)


def test_incomplete_directories_are_clear_errors(saved_tiny_t5, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TextEncoder.from_config("t5", path=empty)
    directory, _ = saved_tiny_t5
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="could not load"):
        TextEncoder.from_config("t5", path=directory)


def test_checkpoint_missing_weights_is_rejected(saved_tiny_t5) -> None:
    from safetensors.torch import load_file, save_file

    directory, _ = saved_tiny_t5
    weights = load_file(directory / "model.safetensors")
    dropped = next(key for key in weights if "layer.1.DenseReluDense" in key)
    del weights[dropped]
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 weights"):
        TextEncoder.from_config("t5", path=directory)


def test_wrong_model_for_the_name_is_rejected(saved_tiny_t5) -> None:
    directory, _ = saved_tiny_t5
    with pytest.raises(ValueError, match="2048-dim.*64-dim"):
        TextEncoder.from_config("flan-t5-xl", path=directory)
    with pytest.raises(ValueError, match="T5-family"):
        TextEncoder.from_config("t5", path=minilm_package_dir())


def test_unknown_name_and_missing_path() -> None:
    with pytest.raises(ValueError, match="unknown text encoder 'flan-t5-xxxl'"):
        TextEncoder.from_config("flan-t5-xxxl")
    with pytest.raises(ValueError, match="needs path"):
        TextEncoder.from_config("auto")


def test_auto_loads_any_encoder_directory(minilm: TextEncoder) -> None:
    generic = TextEncoder.from_config("auto", path=minilm_package_dir(), max_length=32)
    assert generic.hidden_dim == 384 and generic.max_length == 32
    torch.testing.assert_close(generic.encode(CAPTIONS).tokens, minilm.encode(CAPTIONS).tokens, rtol=0, atol=1e-6)


def test_encoder_checkpoint_without_pooler_loads(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=259, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    build_byte_tokenizer().save_pretrained(tmp_path)
    encoder = TextEncoder.from_config("auto", path=tmp_path)
    assert encoder.hidden_dim == 32 and encoder.max_length == 64
    assert encoder.encode(CAPTIONS).lengths.tolist() == [17, 1, 14]
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        TextEncoder.from_config("auto", path=tmp_path, max_length=65)
