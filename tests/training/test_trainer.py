"""End-to-end training on tiny phantoms: run folder, model files, resume, reproducibility, DDP."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tests.training.tiny_config import tiny_config

from gliomaseg.checkpoint import load_checkpoint, load_model
from gliomaseg.training import read_training_log, train


@pytest.fixture(scope="module")
def data(phantoms, phantom_workdir):
    """conftest's phantoms as ``(kaggle_3m folder, shared workdir)``."""
    return phantoms, phantom_workdir


def _cfg(data, tmp_path, **overrides):
    root, workdir = data
    return tiny_config(root, workdir, tmp_path / "runs", **overrides)


def _metrics(run_dir):
    return read_training_log(run_dir)


def test_train_writes_run_folder_and_self_describing_model(data, tmp_path):
    run_dir = train(_cfg(data, tmp_path))
    assert run_dir.name == "unet__bce_dice__fold0"
    for name in ("best.pt", "last.pt", "config.yaml", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    payload = load_checkpoint(run_dir / "best.pt")
    assert payload["model"] == {
        "name": "unet",
        "kwargs": {"in_channels": 3, "out_channels": 1, "features": 4},
    }
    assert payload["preprocess"]["size"] == 32
    assert payload["split_id"].endswith(":fold0")
    assert 0.0 <= payload["metrics"]["val/dice_patient"] <= 1.0
    model, _ = load_model(run_dir / "best.pt")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    val = _metrics(run_dir).dropna(subset=["val/dice_patient"])
    assert list(val["epoch"]) == [0, 1]
    # refuses to overwrite the run silently
    with pytest.raises(ValueError, match="exists"):
        train(_cfg(data, tmp_path))


def test_lightning_ckpt_is_not_a_model_file(data, tmp_path):
    run_dir = train(_cfg(data, tmp_path, epochs=1))
    with pytest.raises(ValueError, match="not a gliomaseg model file"):
        load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


class _Kill(Callback):
    """Stands in for a killed process: stops the run with an error during the second epoch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("simulated kill")


def test_resume_continues_to_the_same_epoch_count(data, tmp_path):
    cfg = _cfg(data, tmp_path, epochs=3, scheduler="onecycle")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, callbacks=[_Kill()])
    first = cfg.run_dir
    assert load_checkpoint(first / "last.pt")["epoch"] == 0
    resumed = train(cfg, resume=True)
    assert resumed == first
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 2
    log = read_training_log(resumed).dropna(subset=["val/dice_patient"])
    assert list(log["epoch"]) == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot resume"):
        train(_cfg(data, tmp_path, run_name="never-ran"), resume=True)


def test_same_seed_same_weights(data, tmp_path):
    a = train(_cfg(data, tmp_path, epochs=1, run_name="a"))
    b = train(_cfg(data, tmp_path, epochs=1, run_name="b"))
    wa, wb = load_checkpoint(a / "last.pt")["state_dict"], load_checkpoint(b / "last.pt")["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_ddp_two_processes_gather_the_validation_metric(data, tmp_path):
    """Lightning's ddp re-runs the command, so drive the real CLI in a subprocess (gloo on CPU)."""
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "gliomaseg.cli",
        "train",
        "--data",
        str(data[0]),
        "--workdir",
        str(data[1]),
        "--runs-dir",
        str(runs),
        "--size",
        "32",
        "--features",
        "4",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--num-workers",
        "0",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--run-name",
        "ddp",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    val = _metrics(runs / "ddp").dropna(subset=["val/n_slices"])
    from gliomaseg.data.index_table import load_index
    from gliomaseg.data.splits import load_splits, part_patients

    table = load_index(data[1] / "index.csv")
    val_patients = part_patients(load_splits(data[1] / "splits.json"), "val", 0)
    n_val = int(table["patient_id"].isin(val_patients).sum())
    # each rank sees about half the slices; the logged count is the union over both ranks
    assert int(val["val/n_slices"].iloc[-1]) == n_val
    assert int(val["val/n_patients"].iloc[-1]) == len(val_patients)


def test_a_run_without_validation_patients_keeps_its_last_epoch(data, tmp_path):
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.splits import make_splits, save_splits
    from gliomaseg.errors import GliomasegError

    root, _ = data
    splits = save_splits(make_splits(index_dataset(root).table, test_fraction=0, val_fraction=0), tmp_path / "s.json")
    run_dir = train(_cfg(data, tmp_path, splits=str(splits), epochs=2))
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert best["epoch"] == last["epoch"] == 1 and best["metrics"] == {}
    assert best["selection"] == "last epoch (no validation)"
    assert all(torch.equal(best["state_dict"][k], last["state_dict"][k]) for k in best["state_dict"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(GliomasegError, match="early_stopping=3 needs validation patients"):
        train(_cfg(data, tmp_path, splits=str(splits), early_stopping=3, run_name="es"))
