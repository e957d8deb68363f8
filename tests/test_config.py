from pathlib import Path

import pytest

from infinity_train.config import ConfigError, conf_dir, load_config, model_shape, to_typed, validate

GROUPS = ("model", "tokenizer", "data", "parallel", "optim", "schedule", "logging", "cluster", "sweep", "experiment")
# options whose missing inputs are the user's to give; they compose and validate once given
NEEDS = {
    ("data", "webdataset"): ["data.train_shards='/data/{000000..000009}.tar'"],
    ("data", "cached"): ["data.train_shards='/data/cached-{000000..000009}.tar'"],
    ("parallel", "ddp"): ["world_size=2"],
    ("parallel", "fsdp"): ["world_size=2"],
    ("parallel", "hsdp"): ["world_size=4"],
    ("parallel", "zero1"): ["world_size=2"],
    ("parallel", "zero2"): ["world_size=2"],
    ("parallel", "zero3"): ["world_size=2"],
    ("experiment", "tokenizer_cpu"): [],
}


def all_options():
    root = conf_dir()
    for group in GROUPS:
        for path in sorted((root / group).glob("*.yaml")):
            yield group, path.stem


def test_every_group_exists_and_has_options():
    options = list(all_options())
    for group in GROUPS:
        assert any(g == group for g, _ in options), group


@pytest.mark.parametrize("group, option", list(all_options()))
def test_every_option_composes_and_validates(group, option):
    cfg = load_config([f"{group}={option}", *NEEDS.get((group, option), [])])
    typed = validate(to_typed(cfg))
    if group not in ("experiment",):
        assert getattr(typed, group).name == option


def test_published_ladder_shapes():
    expected = {"layer12": (768, 8), "layer16": (1152, 12), "layer24": (1536, 16), "layer32": (2080, 20),
                "layer40": (2688, 24), "layer48": (3360, 28), "2b": (2048, 16), "20b": (4608, 36)}
    for name, shape in expected.items():
        assert model_shape(to_typed(load_config([f"model={name}"])).model) == shape


def test_depth_dial_shape_rule():
    for depth in (1, 2, 3, 6, 12, 30):
        cfg = to_typed(load_config(["model=family", f"model.depth={depth}"]))
        assert model_shape(cfg.model) == (64 * depth, depth)
    for rung in ("debug1", "debug2", "debug3", "debug4", "debug6", "debug8"):
        model = to_typed(load_config([f"model={rung}"])).model
        assert model_shape(model) == (64 * model.depth, model.depth)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.widht=3"], "Key 'widht' not in 'ModelConfig'"),
        (["modle=layer24"], "Key 'modle' not in 'TrainConfig'"),
        (["model=layer99"], "Could not find 'model/layer99'"),
        (["parallel.strategy=fdsp"], "Invalid value 'fdsp'"),
        (["model.depth=abc"], "could not be converted to Integer"),
        (["experiment=nope"], "Could not find 'experiment/nope'"),
    ],
)
def test_composition_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=layer12", "model.heads=5"], "model.heads=5 must divide model.width=768"),
        (["model.width=120", "model.heads=20"], "head dim 6"),
        (["tokenizer.d=10"], "tokenizer.d=10 is not a supported bit width"),
        (["cluster.time=one day"], "cluster.time='one day' is not a Slurm time limit"),
        (["data.resolution=100"], "resolution 100 does not end on a scale"),
        (["parallel=ddp", "world_size=3"], "global_batch_size=16 must divide evenly across 3 ranks"),
        (["parallel=single", "world_size=2"], "parallel=single runs one process"),
        (["data.aspect_ratios=[1.1]"], "not an aspect template"),
        (["data=webdataset"], "needs data.train_shards"),
        (["tokenizer.channel_multipliers=[1,2,4]"], "stride 16 needs 5 levels"),
        (["schedule.warmup_steps=500"], "warmup_steps=500 must be in [0, total_steps=200)"),
        (["model.text_encoder.name=bert"], "unknown text encoder 'bert'"),
        (["model.text_encoder.name=auto"], "needs model.text_encoder.path and model.text_encoder.dim"),
        (["model.text_encoder.name=flan-t5-xl", "model.text_encoder.dim=1024"], "contradicts flan-t5-xl"),
        (["task=tokenizer", "tokenizer.loss.perceptual=1.0"], "needs tokenizer.loss.perceptual_weights"),
        (["sweep.bits=[8,10]"], "unsupported bit widths [10]"),
        (["optim.betas=[0.9,1.5]"], "optim.betas"),
        (["optim.lr=inf"], "values must be finite numbers: optim.lr=inf"),
        (["optim.weight_decay=nan", "optim.grad_clip=nan"], "optim.weight_decay=nan, optim.grad_clip=nan"),
        (["tokenizer.loss.l1=nan"], "tokenizer.loss.l1=nan"),
        (["optim.betas=[0.9,-inf]"], "optim.betas[1]=-inf"),
        (["+foo=bar"], "unknown config key(s): foo"),
        (["+optim.momentum=0.9"], "unknown config key(s): optim.momentum"),
    ],
)
def test_invalid_values_name_the_problem(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(to_typed(load_config(overrides)))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        validate(to_typed(load_config(["tokenizer.d=10", "data.resolution=100"])))
    assert "tokenizer.d=10" in str(info.value) and "resolution 100" in str(info.value)


def test_experiment_overrides_groups():
    cfg = to_typed(load_config(["experiment=tokenizer_cpu"]))
    assert cfg.task.value == "tokenizer" and cfg.name == "tokenizer_cpu"


def test_conf_dir_from_environment(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(conf_dir(), tmp_path / "conf")
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("name: mine\ndepth: 5\n")
    monkeypatch.setenv("INFINITY_TRAIN_CONF", str(tmp_path / "conf"))
    assert conf_dir() == tmp_path / "conf"
    assert to_typed(load_config(["model=mine"])).model.depth == 5


def test_conf_dir_environment_without_config_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INFINITY_TRAIN_CONF", str(tmp_path))
    with pytest.raises(ConfigError, match="has no config.yaml"):
        load_config([])


@pytest.mark.parametrize(
    "args, message",
    [
        (["describe", "model.widht=3"], "Key 'widht' not in 'ModelConfig'"),
        (["describe", "model=layer99"], "Could not find 'model/layer99'"),
        (["describe", "tokenizer.d=10"], "tokenizer.d=10 is not a supported bit width"),
        (["config", "model.heads=3"], "model.heads=3 must divide model.width=128"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_cli_errors_exit_nonzero_with_one_line(cli, args, message):
    result = cli("infinity_train", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""


def test_cli_config_prints_resolved_yaml(cli):
    result = cli("infinity_train", "config", "model=layer16", "tokenizer=d32")
    assert result.returncode == 0, result.stderr
    assert "name: layer16" in result.stdout and "d: 32" in result.stdout
