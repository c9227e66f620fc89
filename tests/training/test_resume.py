"""Resuming and refusing runs: the run's own config.yaml wins, contradictions are named, no dead-end folders.

One short run is trained once per module (``finished``); the refusals below fail before any training,
so they are cheap. A run resumed from its folder alone after SIGKILL and SIGTERM is in
tests/reliability/test_interrupted.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from gliomaseg.checkpoint import load_checkpoint
from gliomaseg.cli import main
from gliomaseg.errors import GliomasegError
from gliomaseg.training import train
from gliomaseg.training.config import resolve_config

TINY = {"size": 32, "features": 4, "batch_size": 8, "num_workers": 0, "loss": "bce_dice", "lr": 1e-3}
TINY["limit_train_batches"] = 3


def _cfg(phantoms: Path, workdir: Path, runs: Path, **overrides):
    return resolve_config({"data": str(phantoms), "workdir": str(workdir), "runs_dir": str(runs), **TINY, **overrides})


@pytest.fixture(scope="module")
def finished(phantoms: Path, phantom_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run folder (do not modify: copy what a test changes)."""
    return train(_cfg(phantoms, phantom_workdir, tmp_path_factory.mktemp("runs"), epochs=2))


def _main_status(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--lr", "0.01", "--epochs", "5"],
            r"lr=0\.01 \(the run has 0\.001\); epochs=5 \(the run has 2\) contradict its",
        ),
        (["--preset", "cpu"], r"preset='cpu' \(the run has None\) contradicts its config\.yaml"),
        (["--features", "8"], r"features=8 \(the run has 4\) contradicts its config\.yaml.*--run-name"),
    ],
    ids=["two-settings", "preset", "network-width"],
)
def test_contradicting_flags_are_refused_naming_each(finished: Path, capsys, flags: list[str], expected: str) -> None:
    config = (finished / "config.yaml").read_bytes()
    status, err = _main_status(["train", "--resume-from", str(finished), *flags], capsys)
    assert status == 2 and err.startswith(f"gliomaseg train: error: cannot resume {finished}: ")
    assert len(err.splitlines()) == 1
    assert re.search(expected, err), err
    assert (finished / "config.yaml").read_bytes() == config


def _garbage(tmp_path: Path, finished: Path) -> Path:
    (tmp_path / "x.ckpt").write_bytes(b"\x80\x02garbage")
    return tmp_path / "x.ckpt"


def _model_file(tmp_path: Path, finished: Path) -> Path:
    return finished / "best.pt"


def _missing(tmp_path: Path, finished: Path) -> Path:
    return tmp_path / "nope.ckpt"


def _not_a_run(tmp_path: Path, finished: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_garbage, r"x\.ckpt is not a Lightning checkpoint of a gliomaseg run .*damaged or not a PyTorch file"),
        (_model_file, r"best\.pt is not a Lightning checkpoint .*model files \(best\.pt\) cannot be resumed"),
        (_missing, r"cannot resume: .*nope\.ckpt does not exist"),
        (_not_a_run, r"cannot resume: .*empty is not a run folder"),
    ],
    ids=["garbage", "model-file", "missing", "not-a-run-folder"],
)
def test_a_bad_resume_path_is_one_line(phantoms, phantom_workdir, tmp_path, finished, capsys, make, expected) -> None:
    path = make(tmp_path, finished)
    argv = ["train", "--data", str(phantoms), "--workdir", str(phantom_workdir), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--resume-from", str(path)]
    status, err = _main_status([*argv, "--size", "32", "--features", "4"], capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert re.search(expected, err), err
    assert not (tmp_path / "runs").exists()


def test_another_runs_checkpoint_with_other_settings_is_named(phantoms, tmp_path, finished) -> None:
    cfg = _cfg(phantoms, tmp_path / "work", tmp_path / "runs", features=8)
    with pytest.raises(
        GliomasegError, match=r"last\.ckpt was trained with other settings: model_kwargs=.*'features': 4"
    ):
        train(cfg, resume=finished / "checkpoints" / "last.ckpt")
    assert not cfg.run_dir.exists()


def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed(phantoms, phantom_workdir, tmp_path) -> None:
    cfg = _cfg(phantoms, phantom_workdir, tmp_path / "runs", epochs=1)

    class DieAtOnce(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, callbacks=[DieAtOnce()])
    assert (cfg.run_dir / "config.yaml").is_file() and not (cfg.run_dir / "checkpoints").exists()
    with pytest.raises(GliomasegError, match="exists: pass --resume"):
        train(cfg)
    assert train(cfg, resume=True) == cfg.run_dir
    assert load_checkpoint(cfg.run_dir / "last.pt")["epoch"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_an_unavailable_accelerator_is_refused_before_the_run_folder(phantoms, phantom_workdir, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "--data", str(phantoms), "--workdir", str(phantom_workdir), "--runs-dir", str(runs)]
    status, err = _main_status([*argv, "--size", "32", "--features", "4", "--accelerator", "gpu"], capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "cannot train with accelerator='gpu'" in err and "--accelerator auto" in err
    assert not runs.exists()


def test_a_diverging_run_stops_and_writes_no_model_file(phantoms, phantom_workdir, tmp_path) -> None:
    cfg = _cfg(phantoms, phantom_workdir, tmp_path / "runs", epochs=2, optimizer="sgd", lr=1e30)
    with pytest.raises(GliomasegError, match=r"training diverged: .* at epoch 0.*Lower --lr \(now 1e\+30\)"):
        train(cfg)
    assert not list(cfg.run_dir.glob("*.pt")) and not (cfg.run_dir / "checkpoints").exists()


def test_resume_alone_continues_the_run_the_other_flags_name(finished: Path, capsys) -> None:
    # --resume is a plain switch: the run folder is the one --runs-dir/--run-name name (refused here
    # before any training, since --lr contradicts it: proof that it found that folder's config.yaml)
    argv = ["train", "--runs-dir", str(finished.parent), "--run-name", finished.name, "--resume", "--lr", "0.01"]
    status, err = _main_status(argv, capsys)
    assert status == 2 and f"cannot resume {finished}: lr=0.01 (the run has 0.001)" in err, err


@pytest.mark.parametrize("limit", ["0", "0.001"], ids=["zero", "fraction-of-no-batch"])
def test_a_run_that_trains_nothing_fails_and_claims_no_model_file(
    phantoms, phantom_workdir, tmp_path, capsys, limit: str
) -> None:
    argv = ["train", "--data", str(phantoms), "--workdir", str(phantom_workdir), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--size", "32", "--features", "4", "--epochs", "1", "--num-workers", "0", "--limit-train-batches", limit]
    status = main(argv)
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]  # after the progress bars of indexing and caching
    assert status == 2 and line.startswith("gliomaseg train: error: ") and "Traceback" not in err, err
    assert re.search(r"limit_train_batches=0(\.0)?: must be > 0|cannot train: .*--limit-train-batches", line), err
    assert "best.pt" not in out and "run folder:" not in out
    assert not list((tmp_path / "runs").rglob("*.pt"))
