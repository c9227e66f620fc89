"""Every ``gliomaseg`` sub-command through ``main()`` in-process: its happy path and one bad input.

One row per sub-command in ``COMMANDS``; a new sub-command adds one row (``test_every_command_has_a_row``
fails until it does). A happy path returns 0 and leaves its outputs; a bad input returns 2 and
prints one line ``gliomaseg CMD: error: ...`` on stderr, no traceback. Inputs are the session's
phantoms and model files (see conftest.py), so the whole file stays fast.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gliomaseg.checkpoint import load_checkpoint
from gliomaseg.cli import build_parser, main
from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import load_index, save_index
from gliomaseg.errors import GliomasegError


@dataclass(frozen=True)
class Env:
    """What a row may use: its own empty folder and the session's read-only inputs."""

    tmp: Path  # empty, this test's own
    phantoms: Path  # conftest's 6-patient phantom kaggle_3m folder
    workdir: Path  # conftest's shared work folder of the phantoms (training reuses its cache)
    index: Path  # an index.csv of the phantoms
    model: Path  # a real (untrained) U-Net model file, size 32

    @property
    def patient(self) -> Path:
        return sorted(p for p in self.phantoms.iterdir() if p.is_dir())[0]


@dataclass(frozen=True)
class Command:
    """One sub-command: a run that must succeed and what it must leave behind, and a bad input."""

    name: str
    happy: Callable[[Env], list[str]] | None  # None: no offline happy path (the row says why)
    check: Callable[[Env, str], None] | None  # given the printed output, after ``happy`` returned 0
    bad: Callable[[Env], list[str]]
    error: str  # regex the error line must match after "gliomaseg NAME: error: "


# --------------------------------------------------------------------- what each happy path leaves
def _synth(env: Env, printed: str) -> None:
    assert "wrote 2 synthetic patients" in printed
    assert len(index_dataset(env.tmp / "ph").table["patient_id"].unique()) == 2


def _index(env: Env, printed: str) -> None:
    assert "patients: 6" in printed
    assert load_index(env.tmp / "index.csv")["patient_id"].nunique() == 6


def _split(env: Env, printed: str) -> None:
    splits = json.loads((env.tmp / "splits.json").read_text())
    patients = set(splits["test"]) | set(splits["folds"][0]["train"]) | set(splits["folds"][0]["val"])
    assert len(patients) == 6 and "fold 0 train" in printed


def _cache(env: Env, printed: str) -> None:
    (cache,) = (env.tmp / "cache").iterdir()
    assert json.loads((cache / "meta.json").read_text())["height"] == 32
    assert str(cache) in printed


def _train(env: Env, printed: str) -> None:
    run = env.tmp / "runs" / "unet__dice__fold0"
    assert load_checkpoint(run / "best.pt")["model"]["kwargs"]["features"] == 4
    assert f"run folder: {run}" in printed


def _demo(env: Env, printed: str) -> None:
    (report,) = (env.tmp / "demo" / "runs").glob("*/eval_test/report.html")
    assert "per-patient Dice" in printed and str(report) in printed


def _evaluate(env: Env, printed: str) -> None:
    summary = json.loads((env.tmp / "ev" / "summary.json").read_text())
    assert summary["n_patients"] == 6 and summary["split"]["name"] == "all"
    assert "per-patient Dice: mean" in printed


def _score(env: Env, printed: str) -> None:
    summary = json.loads((env.tmp / "score" / "summary.json").read_text())
    assert summary["n_cases"] == 6 and summary["units"]["hd95"] == "voxels"  # kaggle_3m: no voxel size
    assert summary["mean"]["dice"] == 1.0 and "Dice: mean 1.000" in printed


def _predict(env: Env, printed: str) -> None:
    masks = list((env.tmp / "pred" / env.patient.name).glob("*_mask.tif"))
    assert len(masks) == len(list(env.patient.glob("*_mask.tif"))) > 0
    assert (env.tmp / "pred" / "cases.csv").is_file() and "1 case(s)" in printed
    assert "cases.csv and components.csv in" in printed and "overlay" not in printed  # the row runs --no-overlays


def _export(env: Env, printed: str) -> None:
    assert (env.tmp / "m.onnx").stat().st_size > 0 and "max abs diff" in printed


def _radiogenomics(env: Env, printed: str) -> None:
    features = (env.tmp / "rg" / "features.csv").read_text().splitlines()
    assert len(features) == 1 + 6 and (env.tmp / "rg" / "radiogenomics.md").is_file()


def _explore(env: Env, printed: str) -> None:
    assert (env.tmp / "ex" / "explore.md").is_file() and (env.tmp / "ex" / "explore.html").is_file()


def _study(env: Env, printed: str) -> None:
    assert "fold" in printed  # --list prints each run and its state; nothing is trained


def _study_file(env: Env) -> Path:
    config = env.tmp / "tiny.yaml"
    config.write_text(
        f"name: tiny\ndata: {env.phantoms}\nfolds: 2\nbase:\n  size: 32\n  features: 4\n  epochs: 1\n"
        "axes:\n  loss: [dice, bce_dice]\n"
    )
    return config


def _models(env: Env, printed: str) -> None:
    assert "lgg-unet" in printed and "unet: classic U-Net" in printed


def _full_folder(env: Env) -> Path:
    (env.tmp / "full").mkdir()
    (env.tmp / "full" / "mine.txt").write_text("keep")
    return env.tmp / "full"


# -------------------------------------------------------------------------------- the table
TINY_TRAIN = ["--size", "32", "--features", "4", "--batch-size", "8", "--epochs", "1", "--num-workers", "0"]
TINY_TRAIN += ["--limit-train-batches", "2", "--limit-val-batches", "2"]

COMMANDS = [
    Command(
        "synth",
        lambda e: ["synth", str(e.tmp / "ph"), "--patients", "2", "--size", "32"],
        _synth,
        lambda e: ["synth", str(e.tmp / "ph"), "--patients", "0"],
        r"n_patients must be >= 1",
    ),
    Command(
        "index",
        lambda e: ["index", str(e.phantoms), "--workdir", str(e.tmp)],
        _index,
        lambda e: ["index", str(e.tmp / "nope"), "--workdir", str(e.tmp)],
        r"nope does not exist",
    ),
    Command(
        "split",
        lambda e: ["split", "--index", str(e.index), "--out", str(e.tmp / "splits.json"), "--stratify", "site"],
        _split,
        lambda e: ["split", "--workdir", str(e.tmp)],
        r"no index at .*index\.csv",
    ),
    Command(
        "cache",
        lambda e: ["cache", "--data", str(e.phantoms), "--workdir", str(e.tmp), "--size", "32"],
        _cache,
        lambda e: ["cache", "--workdir", str(e.tmp)],
        r"no index at .*--data",
    ),
    Command(
        "train",
        lambda e: (
            ["train", "--data", str(e.phantoms), "--workdir", str(e.workdir), "--runs-dir", str(e.tmp / "runs")]
            + TINY_TRAIN
        ),
        _train,
        lambda e: ["train", "--data", str(e.phantoms), "--workdir", str(e.tmp), "--size", "100"],
        r"size=100: must be a multiple of 16",
    ),
    Command(
        "demo",
        lambda e: ["demo", "--out", str(e.tmp / "demo"), "--patients", "3", "--epochs", "1"],
        _demo,
        lambda e: ["demo", "--out", str(e.tmp / "demo"), "--patients", "0"],
        r"n_patients must be >= 1",
    ),
    Command(
        "evaluate",
        lambda e: (
            ["evaluate", "--model", str(e.model), "--data", str(e.phantoms), "--split", "all"]
            + ["--out", str(e.tmp / "ev"), "--no-figures"]
        ),
        _evaluate,
        lambda e: ["evaluate", "--model", str(e.tmp / "missing.pt")],
        r"missing\.pt does not exist",
    ),
    Command(
        "score",
        lambda e: ["score", str(e.phantoms), str(e.phantoms), "--out", str(e.tmp / "score"), "--n-boot", "20"],
        _score,
        lambda e: ["score", str(e.tmp / "nope"), str(e.phantoms)],
        r"nope does not exist",
    ),
    Command(
        "predict",
        lambda e: ["predict", "--model", str(e.model), str(e.patient), "--out", str(e.tmp / "pred"), "--no-overlays"],
        _predict,
        lambda e: ["predict", "--model", str(e.model), str(e.tmp / "nope.png"), "--out", str(e.tmp / "pred")],
        r"nope\.png does not exist",
    ),
    Command(
        "export",
        lambda e: ["export", "--model", str(e.model), "--out", str(e.tmp / "m.onnx")],
        _export,
        lambda e: ["export", "--model", str(e.model), "--out", str(e.tmp / "m.bin")],
        r"m\.bin.*\.onnx",
    ),
    Command(
        "radiogenomics",
        lambda e: ["radiogenomics", str(e.phantoms), "--out", str(e.tmp / "rg"), "--no-figures"],
        _radiogenomics,
        lambda e: ["radiogenomics", str(e.phantoms), "--out", str(e.tmp / "rg"), "--masks", "predicted"],
        r"needs a model",
    ),
    Command(
        "explore",
        lambda e: ["explore", str(e.phantoms), "--out", str(e.tmp / "ex")],
        _explore,
        lambda e: ["explore", str(e.tmp / "nope"), "--out", str(e.tmp / "ex")],
        r"nope",
    ),
    Command(
        "study",
        lambda e: ["study", str(_study_file(e)), "--list"],
        _study,
        lambda e: ["study", str(e.tmp / "nope.yaml")],
        r"nope\.yaml",
    ),
    Command(
        "models",
        lambda e: ["models"],
        _models,
        lambda e: ["models", "--info", "no-such-model"],
        r"no bundled model 'no-such-model'; bundled: lgg-unet",
    ),
    # A served page runs until stopped: tests/web/test_web_browser.py starts it as a process and
    # drives it in Chromium; here only the bad input runs.
    Command(
        "serve",
        None,
        None,
        lambda e: ["serve", "--model", str(e.tmp / "missing.pt")],
        r"missing\.pt",
    ),
    # Its happy path needs the network and Kaggle credentials, which tests do not have: only the
    # bad input runs here (tests/data/test_download.py covers the offline paths).
    Command(
        "download",
        None,
        None,
        lambda e: ["download", str(_full_folder(e))],
        r"full already exists and is not empty.*--overwrite",
    ),
]


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def phantom_index(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_index(index_dataset(phantoms).table, tmp_path_factory.mktemp("cli") / "index.csv")


@pytest.fixture
def env(tmp_path: Path, phantoms: Path, phantom_workdir: Path, phantom_index: Path, model_file) -> Env:
    return Env(tmp_path, phantoms, phantom_workdir, phantom_index, model_file())


def _ids(rows: list[Command]) -> list[str]:
    return [row.name for row in rows]


# -------------------------------------------------------------------------------------- tests
def test_every_command_has_a_row() -> None:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(_ids(COMMANDS))


HAPPY = [row for row in COMMANDS if row.happy is not None]


@pytest.mark.parametrize("row", HAPPY, ids=_ids(HAPPY))
def test_happy_path(row: Command, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert row.check is not None, f"the {row.name} row runs a happy path but checks nothing"
    assert main(row.happy(env)) == 0
    row.check(env, capsys.readouterr().out)


@pytest.mark.parametrize("row", COMMANDS, ids=_ids(COMMANDS))
def test_bad_input_is_one_line_and_status_2(row: Command, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(row.bad(env)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    line = err.strip()
    prefix = f"gliomaseg {row.name}: error: "
    assert line.startswith(prefix), line
    assert re.search(row.error, line[len(prefix) :]), line


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(GliomasegError, match="nope does not exist"):
        main(["-v", "index", str(tmp_path / "nope")])


def _subparser(name: str) -> argparse.ArgumentParser:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_train_help_describes_every_flag_and_lists_the_choices() -> None:
    parser = _subparser("train")
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 30
    for action in flags:
        assert action.help and not action.help.startswith("default"), action.option_strings
    text = parser.format_help()
    listed_choices = ("network architecture: attention_unet, resunet, unet, unetpp", "optimiser: adam, adamw, sgd")
    for listed in (*listed_choices, "onecycle"):
        assert listed in " ".join(text.split()), listed
    for name in ("loss", "augment", "precision", "normalisation", "component_score"):
        action = next(a for a in flags if a.dest == name)
        assert list(action.choices), name


def test_evaluate_warnings_are_shown_once(env: Env, capsys: pytest.CaptureFixture[str], caplog) -> None:
    argv = ["evaluate", "--model", str(env.model), "--data", str(env.phantoms), "--split", "all"]
    argv += ["--out", str(env.tmp / "ev")]
    assert main([*argv, "--no-figures"]) == 0
    out, err = capsys.readouterr()
    shown = out + err + caplog.text
    assert shown.count("the model file records no split id") == 1
