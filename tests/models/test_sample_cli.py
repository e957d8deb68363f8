"""``infinity-sample`` end to end on a tiny exported run: PNG size, seeding, and one-line errors for bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import save_file

from infinity_train.build import build_tokenizer, build_transformer
from infinity_train.config import load_config, to_typed, validate
from infinity_train.models.infinity import MODEL_FORMAT
from infinity_train.sample_command import main

BASE_OVERRIDES = ["model=debug1", "tokenizer=cpu_d8", "data=synthetic64", "model.text_encoder.name=tiny-t5"]
EXPORT_METADATA = {"task": "transformer", "step": "1", "model_format": str(MODEL_FORMAT)}  # as the trainer writes it


def write_run(root: Path, overrides: list[str] = (), tokenizer_file: Path | None = None, model_overrides: list[str] = ()) -> Path:
    """A run directory as the trainer exports it: config.yaml, export/model.safetensors, export/meta.json,
    with a random tokenizer file referenced by tokenizer.checkpoint. ``model_overrides`` build the saved
    weights from another config (a checkpoint that does not fit the run config)."""
    run = root / "run"
    (run / "export").mkdir(parents=True)
    raw = load_config([*BASE_OVERRIDES, *overrides])
    if tokenizer_file is None:
        tokenizer_file = root / "tokenizer.safetensors"
        torch.manual_seed(0)
        save_file(build_tokenizer(to_typed(raw)).state_dict(), str(tokenizer_file))
    raw.tokenizer.checkpoint = str(tokenizer_file)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(raw, resolve=True))
    weights_cfg = validate(to_typed(load_config([*BASE_OVERRIDES, *overrides, *model_overrides])))
    torch.manual_seed(0)
    save_file(build_transformer(weights_cfg).state_dict(), str(run / "export" / "model.safetensors"), metadata=EXPORT_METADATA)
    (run / "export" / "meta.json").write_text(json.dumps({"task": "transformer", "step": 1}))
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("sample"))


def sample(run: Path, out: Path, *extra: str) -> int:
    return main(["--run", str(run), "--prompts", "a red cube", "two blue spheres", "--out", str(out), "--device", "cpu", *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_grid_has_prompt_rows_and_sample_columns(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert sample(run_dir, out, "--per-prompt", "3", "--seed", "5") == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (3 * 64, 2 * 64)  # (width, height): 3 samples x 64 px, 2 prompts x 64 px


def test_same_seed_is_byte_identical_and_other_seed_differs(run_dir, tmp_path):
    paths = {name: tmp_path / f"{name}.png" for name in ("first", "again", "other")}
    for name, seed in (("first", "7"), ("again", "7"), ("other", "8")):
        assert sample(run_dir, paths[name], "--per-prompt", "2", "--seed", seed, "--cfg", "4", "--tau", "0.9", "--top-p", "0.95") == 0
    first = paths["first"].read_bytes()
    assert first == paths["again"].read_bytes()
    assert first != paths["other"].read_bytes()


def test_non_square_aspect_and_resolution_override(tmp_path, capsys, run_dir):
    out = tmp_path / "tall.png"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n\nthree green cones\n")
    assert main(["--run", str(run_dir), "--prompts-file", str(prompts), "--aspect", "0.5", "--resolution", "96",
                 "--per-prompt", "1", "--out", str(out), "--device", "cpu"]) == 0
    with Image.open(out) as image:
        assert image.size == (96, 2 * 48)  # h/w 0.5 at 96: final grid (3, 6) tokens = 48 x 96 px, 2 prompts


def test_checkpoint_and_config_flags_name_the_files(run_dir, tmp_path):
    out = tmp_path / "grid.png"
    argv = ["--checkpoint", str(run_dir / "export" / "model.safetensors"), "--config", str(run_dir / "config.yaml"),
            "--prompts", "x", "--per-prompt", "1", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert out.is_file()


def test_missing_run_dir(tmp_path, capsys):
    assert sample(tmp_path / "nowhere", tmp_path / "grid.png") == 2
    assert "does not exist" in one_line_error(capsys)


def test_missing_checkpoint_in_run_dir(tmp_path, capsys):
    run = write_run(tmp_path)
    (run / "export" / "model.safetensors").unlink()
    assert sample(run, tmp_path / "grid.png") == 2
    assert "model.safetensors does not exist" in one_line_error(capsys)


def test_state_dict_with_an_extra_key(tmp_path, capsys):
    run = write_run(tmp_path)
    path = run / "export" / "model.safetensors"
    from safetensors.torch import load_file

    state = load_file(str(path))
    state["blocks.7.extra.weight"] = torch.zeros(2)
    save_file(state, str(path), metadata=EXPORT_METADATA)
    assert sample(run, tmp_path / "grid.png") == 2
    message = one_line_error(capsys)
    assert "unexpected keys: blocks.7.extra.weight" in message and "missing" not in message


@pytest.mark.parametrize("model_overrides, expected", [
    (["tokenizer.d=16"], "predicts 16 bits per token but the config's model predicts 8"),
    (["model.depth=2"], "does not match the model: unexpected keys: blocks.1."),
    (["model.width=128", "model.heads=2"], "shapes (found vs model) differ: start_pos (1, 1, 128) vs (1, 1, 64)"),
])
def test_checkpoint_of_another_model(tmp_path, capsys, model_overrides, expected):
    run = write_run(tmp_path, model_overrides=model_overrides)
    assert sample(run, tmp_path / "grid.png") == 2
    assert expected in one_line_error(capsys)


def test_an_export_written_before_the_release_format_is_refused(tmp_path, capsys):
    run = write_run(tmp_path)
    path = run / "export" / "model.safetensors"
    from safetensors.torch import load_file

    save_file(load_file(str(path)), str(path), metadata={"task": "transformer", "step": "1"})  # no model_format: format 1
    assert sample(run, tmp_path / "grid.png") == 2
    assert "holds a transformer of format 1, written before the model matched the Infinity release" in one_line_error(capsys)


def test_tokenizer_d_differs_from_config_d(tmp_path, capsys):
    tokenizer_file = tmp_path / "d16.safetensors"
    save_file(build_tokenizer(to_typed(load_config([*BASE_OVERRIDES, "tokenizer=cpu_d16"]))).state_dict(), str(tokenizer_file))
    run = write_run(tmp_path, tokenizer_file=tokenizer_file)
    assert sample(run, tmp_path / "grid.png") == 2
    assert "has d=16 but the config says tokenizer.d=8" in one_line_error(capsys)


@pytest.mark.parametrize("extra, expected", [
    (["--aspect", "1.1"], "h/w 1.1 is not an aspect template"),
    (["--resolution", "100"], "resolution 100 does not end on a scale"),
    (["--tau", "0"], "--tau must be positive"),
    (["--top-p", "1.5"], "--top-p must be in [0, 1]"),
])
def test_bad_sampling_options(run_dir, tmp_path, capsys, extra, expected):
    assert sample(run_dir, tmp_path / "grid.png", *extra) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "grid.png").exists()


def test_a_tokenizer_run_is_refused(tmp_path, capsys):
    run = write_run(tmp_path)
    (run / "export" / "meta.json").write_text(json.dumps({"task": "tokenizer", "step": 3}))
    assert sample(run, tmp_path / "grid.png") == 2
    assert "is a tokenizer run" in one_line_error(capsys)


def test_a_config_that_does_not_fit_the_schema(tmp_path, capsys):
    run = write_run(tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("  depth: 1\n", "  depth: 1\n  widht: 3\n", 1))
    assert sample(run, tmp_path / "grid.png") == 2
    assert "widht" in one_line_error(capsys)


def test_tokenizer_override_takes_a_tokenizer_run_dir(tmp_path, capsys):
    run = write_run(tmp_path)
    tokenizer_run = tmp_path / "tokenizer_run"
    (tokenizer_run / "export").mkdir(parents=True)
    (tmp_path / "tokenizer.safetensors").rename(tokenizer_run / "export" / "tokenizer.safetensors")
    assert sample(run, tmp_path / "grid.png") == 2  # the run config's tokenizer file is gone
    assert "tokenizer.safetensors does not exist" in one_line_error(capsys)
    assert sample(run, tmp_path / "grid.png", "--tokenizer", str(tokenizer_run), "--per-prompt", "1") == 0
    assert (tmp_path / "grid.png").is_file()
