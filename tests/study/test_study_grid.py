"""Study files: parsing, configuration names, refused settings, shards, the study folder and its splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gliomaseg.errors import GliomasegError
from gliomaseg.study.folder import make_study_splits, prepare_study
from gliomaseg.study.grid import StudyConfig, load_study_config
from gliomaseg.study.launchers import parse_shard, shard_runs

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, **content) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"axes": {"arch": ["unet"]}, **content}, sort_keys=False))
    return path


def test_names_follow_the_axes(tmp_path):
    path = _write(
        tmp_path,
        folds=2,
        axes={"arch": ["unet", "resunet"], "loss": ["bce_dice"], "augment": ["full", "none"], "tta": [True]},
    )
    cfg = load_study_config(path)
    assert cfg.name == "s"
    assert cfg.configs() == [
        "unet__bce_dice__augfull__ttaon",
        "unet__bce_dice__augnone__ttaon",
        "resunet__bce_dice__augfull__ttaon",
        "resunet__bce_dice__augnone__ttaon",
    ]
    runs = cfg.runs()
    assert len(runs) == 8 and runs[1].name == "unet__bce_dice__augfull__ttaon__fold1"
    assert runs[0].settings == {"arch": "unet", "loss": "bce_dice", "augment": "full", "tta": True}


def test_labelled_axis_may_set_several_settings(tmp_path):
    axes = {"recipe": {"small": {"features": 8, "size": 64}, "big": {"features": 16, "size": 128}}}
    cfg = load_study_config(_write(tmp_path, base={"epochs": 2}, axes=axes))
    assert cfg.configs() == ["small", "big"]
    assert cfg.runs()[-1].settings == {"epochs": 2, "features": 16, "size": 128}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"colour": "red"}, "unknown key"),
        ({"folds": 1}, "folds=1"),
        ({"checkpoint": "middle"}, "checkpoint='middle'"),
        ({"base": {"fold": 1}}, "set by the study"),
        ({"base": {"early_stopping": 3}}, "early_stopping=3"),
        ({"base": {"scheduler": "plateau"}}, "scheduler=plateau"),
        ({"base": {"colour": "red"}}, "unknown settings"),
        ({"axes": {"arch": ["unet", "nope"]}}, "configuration nope"),
        ({"axes": {}}, "axes is empty"),
        ({"axes": {"arch": {"a__b": "unet"}}}, "label 'a__b'"),
        ({"axes": {"features": [8, 8]}}, "both named"),
        ({"statistics": {"metric": "accuracy"}}, "statistics.metric"),
        ({"evaluate": {"shifts": ["blur"]}}, "unknown shift 'blur'"),
        ({"split": {"test_from": "x.json", "test_fraction": 0.1}}, "not both"),
    ],
)
def test_bad_study_files_are_refused(tmp_path, content, message):
    with pytest.raises(GliomasegError, match=message):
        load_study_config(_write(tmp_path, **content))


@pytest.mark.parametrize("name", sorted(path.name for path in (REPO / "studies").glob("*.yaml")))
def test_committed_study_files_parse(name):
    cfg = load_study_config(REPO / "studies" / name)
    assert cfg.checkpoint == "last" and len(cfg.runs()) == len(cfg.configs()) * cfg.folds


def test_context_study_compares_one_slice_with_its_neighbours():
    cfg = load_study_config(REPO / "studies" / "context-cpu.yaml")
    runs = {spec.config: spec.settings for spec in cfg.runs() if spec.fold == 0}
    assert {name: settings["context_slices"] for name, settings in runs.items()} == {"ctx0": 0, "ctx1": 1}
    assert {settings["augment"] for settings in runs.values()} == {"robust_mild"}


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("2/3", (2, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/2/3"])
def test_parse_shard_refuses(text):
    with pytest.raises(GliomasegError, match="--shard"):
        parse_shard(text)


def test_shards_cover_every_run_once():
    cfg = StudyConfig(name="x", folds=3, axes={"arch": {"unet": {"arch": "unet"}, "resunet": {"arch": "resunet"}}})
    runs = cfg.runs()
    slices = [shard_runs(runs, k, 4) for k in range(1, 5)]
    names = [spec.name for part in slices for spec in part]
    assert sorted(names) == sorted(spec.name for spec in runs) and len(set(names)) == len(runs)


def test_study_splits_keep_the_given_test_part(tmp_path, phantoms):
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.splits import make_splits, save_splits

    table = index_dataset(phantoms).table
    given = make_splits(table, test_fraction=0.3, seed=5)
    save_splits(given, tmp_path / "given.json")
    cfg = load_study_config(_write(tmp_path, folds=2, split={"test_from": "given.json", "seed": 1}))
    splits = make_study_splits(table, cfg)
    assert splits["test"] == given["test"]
    vals = [p for fold in splits["folds"] for p in fold["val"]]
    rest = sorted(set(table["patient_id"]) - set(given["test"]))
    assert sorted(vals) == rest  # every non-test patient held out exactly once


def test_changed_settings_are_refused_naming_the_key(tmp_path, phantoms):
    base = {"preset": "demo", "epochs": 1, "features": 4}
    path = _write(tmp_path, data=str(phantoms), folds=2, base=base)
    study = prepare_study(load_study_config(path), tmp_path / "study", progress=False, build_cache=False)
    assert (study.folder / "splits.json").is_file() and study.record["split_id"]
    # The launcher and the statistics may change; the same settings otherwise reopen the folder.
    path.write_text(path.read_text() + "slurm: {partition: other}\nstatistics: {alpha: 0.01}\n")
    again = prepare_study(load_study_config(path), tmp_path / "study", progress=False, build_cache=False)
    assert again.record["config"]["statistics"] == {"alpha": 0.01}
    path = _write(tmp_path, data=str(phantoms), folds=2, base={**base, "epochs": 2})
    with pytest.raises(GliomasegError, match=r"base\.epochs: 1 -> 2"):
        prepare_study(load_study_config(path), tmp_path / "study", progress=False, build_cache=False)


def test_slurm_section_maps_to_submitit_and_unknown_keys_are_refused(tmp_path):
    from gliomaseg.study.folder import Study
    from gliomaseg.study.launchers import _executor_parameters, submit_slurm

    slurm = {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 30, "setup": ["module load cuda"]}
    cfg = StudyConfig(name="x", folds=2, axes={"arch": {"unet": {"arch": "unet"}}}, slurm=slurm)
    study = Study(cfg, tmp_path, {"split_id": "0"})
    params = _executor_parameters(study, 2, 1)
    assert params["slurm_partition"] == "gpu" and params["slurm_setup"] == ["module load cuda"]
    assert params["gpus_per_node"] == 1 and params["tasks_per_node"] == 2  # one task per device (DDP)
    study.config.slurm = {"colour": "red"}
    with pytest.raises(GliomasegError, match="slurm settings"):
        submit_slurm(study, cfg.runs())


def _no_slurm_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with the Python running the tests but no SLURM command (as on a plain machine)."""
    import shutil
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("sbatch") is None and shutil.which("srun") is None


def test_submitit_without_slurm_is_one_clear_error(tmp_path, monkeypatch):
    from gliomaseg.study.folder import Study
    from gliomaseg.study.launchers import submit_slurm

    pytest.importorskip("submitit", reason="the study extra: pip install -e '.[study]'")
    _no_slurm_path(tmp_path, monkeypatch)
    cfg = StudyConfig(name="x", folds=2, axes={"arch": {"unet": {"arch": "unet"}}}, slurm={"partition": "gpu"})
    with pytest.raises(GliomasegError, match=r"--launcher submitit needs SLURM, but sbatch and srun are not on PATH"):
        submit_slurm(Study(cfg, tmp_path / "study", {"split_id": "0"}), cfg.runs())


def test_cli_study_with_submitit_without_slurm_fails_at_once(tmp_path, monkeypatch, capsys):
    from gliomaseg.cli import main

    path = _write(tmp_path, data=str(tmp_path / "kaggle_3m"), folds=2)
    _no_slurm_path(tmp_path, monkeypatch)
    assert main(["study", str(path), "--launcher", "submitit", "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gliomaseg study: error: --launcher submitit needs SLURM") and "\n" not in err, err
    assert not (tmp_path / "study").exists()  # refused before anything was prepared


def test_cpu_small_duration_is_the_same_in_the_file_the_readme_and_docs():
    import re

    def minutes(text: str) -> set[str]:
        return set(re.findall(r"(\d+) minutes", text))

    lines = (REPO / "studies" / "cpu-small.yaml").read_text().splitlines(True)
    header = "".join(line for line in lines if line.startswith("#"))
    stated = minutes(header)
    assert stated == {"22"}, header  # docs/study.md: "Measured: 22 minutes"
    assert "**Measured: 22 minutes**" in (REPO / "docs" / "study.md").read_text()
    readme = (REPO / "README.md").read_text().splitlines()
    readme = [line for line in readme if "cpu-small" in line or "2 losses" in line]
    readme = [line for line in readme if "minutes" in line or "hour" in line]
    assert readme and all(minutes(line) <= stated for line in readme), readme
    assert any(stated & minutes(line) for line in readme), readme


def test_shift_settings_and_their_per_patient_summary(tmp_path):
    """``evaluate: {shifts: [...]}`` is accepted; a run's shifts.csv becomes each patient's dice_shifted."""
    import pandas as pd

    from gliomaseg.study.runner import _shifted

    cfg = load_study_config(_write(tmp_path, evaluate={"figures": False, "shifts": ["all"], "shift_seed": 1}))
    assert cfg.evaluate["shifts"] == ["all"]
    table = pd.DataFrame(
        {"patient_id": ["A", "A", "B", "B"], "shift": ["gamma", "noise"] * 2, "dice": [0.8, 0.6, 0.9, float("nan")]}
    )
    table.to_csv(tmp_path / "shifts.csv", index=False)
    shifted = _shifted(tmp_path / "shifts.csv")
    assert shifted["mean"] == {"A": pytest.approx(0.7), "B": pytest.approx(0.9)}
    assert shifted["per_shift"]["gamma"] == {"A": 0.8, "B": 0.9}
