from __future__ import annotations

from pathlib import Path

import pytest

from gliomaseg.errors import GliomasegError
from gliomaseg.training.config import TrainConfig, load_config_file, resolve_config
from gliomaseg.training.presets import PRESETS


def test_defaults_are_the_seed_recipe():
    cfg = resolve_config({})
    assert (cfg.arch, cfg.loss, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.size) == (
        "unet",
        "dice",
        "adam",
        1e-4,
        8,
        256,
    )
    assert cfg.augment == "full" and cfg.preset is None


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_replaces_defaults_and_flags_win(preset):
    cfg = resolve_config({"preset": preset})
    for key, value in PRESETS[preset].items():
        assert getattr(cfg, key) == value
    cfg = resolve_config({"preset": preset, "lr": 0.123, "epochs": 3})
    assert cfg.lr == 0.123 and cfg.epochs == 3 and cfg.size == PRESETS[preset]["size"]


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".yaml", "preset: cpu\nlr: 0.05\nepochs: 7\n"),
        (".toml", 'preset = "cpu"\nlr = 0.05\nepochs = 7\n'),
    ],
)
def test_config_file_between_preset_and_flags(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = resolve_config({"epochs": 9}, config_file=path)
    assert cfg.preset == "cpu" and cfg.size == PRESETS["cpu"]["size"]
    assert cfg.lr == 0.05 and cfg.epochs == 9


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"size": 100}, "size=100"),
        ({"lr": 0}, "lr=0"),
        ({"tumour_fraction": 1.5}, "tumour_fraction=1.5"),
        ({"threshold": 1.0}, "threshold=1.0"),
        ({"augment": "heavy"}, "augment='heavy'"),
    ],
)
def test_bad_values_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_keys_and_presets(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        resolve_config({"preset": "tpu"})
    bad = tmp_path / "c.yaml"
    bad.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config_file(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_run_dir_named_after_experiment(tmp_path):
    cfg = TrainConfig(arch="resunet", loss="focal", fold=2, runs_dir=str(tmp_path))
    assert cfg.run_dir == tmp_path / "resunet__focal__fold2"


def test_the_working_folder_holds_the_runs_unless_runs_dir_is_given(tmp_path):
    assert TrainConfig(workdir=str(tmp_path)).run_dir == tmp_path / "runs" / "unet__dice__fold0"
    assert TrainConfig(workdir=str(tmp_path), runs_dir="elsewhere").run_dir == Path("elsewhere") / "unet__dice__fold0"


def test_the_old_model_setting_is_named_with_its_new_name(tmp_path):
    (tmp_path / "c.yaml").write_text("model: resunet\n")
    with pytest.raises(GliomasegError, match=r"'model' is now 'arch'"):
        resolve_config(config_file=tmp_path / "c.yaml")


@pytest.mark.parametrize("value", [0, 0.0, -1])
def test_a_run_that_would_train_nothing_is_refused(value):
    with pytest.raises(GliomasegError, match="limit_train_batches.*trains nothing|limit_train_batches.*must be > 0"):
        TrainConfig(limit_train_batches=value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("c.yaml", "lr: [\n", r"c\.yaml: not valid YAML"),
        ("c.toml", "lr = \n", r"c\.toml: not valid TOML"),
        ("c.yaml", "lr: abc\n", r"lr='abc': expected float"),
        ("c.yaml", "epochs: 2.5\n", r"epochs=2\.5: expected int"),
        ("c.yaml", "largest_component: maybe\n", r"largest_component='maybe': expected bool"),
    ],
    ids=["broken-yaml", "broken-toml", "text-for-a-number", "fraction-for-a-count", "text-for-a-switch"],
)
def test_a_bad_config_file_is_one_named_error(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(GliomasegError, match=expected):
        resolve_config(config_file=tmp_path / name)


def test_numbers_yaml_reads_as_text_are_taken_as_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text('lr: 1e-3\nepochs: "7"\n')  # PyYAML reads 1e-3 as a string
    cfg = resolve_config(config_file=tmp_path / "c.yaml")
    assert (cfg.lr, cfg.epochs) == (1e-3, 7)
