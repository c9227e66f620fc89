"""The bundled ``lgg-unet`` model: present in the package, loadable safely, and giving the same masks.

The checksum pins the whole path (weights, preprocessing, network, post-processing) on a
deterministic phantom volume in float32 eager mode, so any change that moves a single voxel fails
here. If a change to inference is intended, re-derive ``MASKS_SHA256`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomaseg.cli import main
from gliomaseg.data.io import read_mask
from gliomaseg.data.phantoms import synthesise_dataset
from gliomaseg.errors import GliomasegError
from gliomaseg.inference import Segmenter, read_volume
from gliomaseg.inference.pretrained import BUNDLED, bundled_path, model_card, resolve_model

#: sha256 of the uint8 masks of the phantom patient below (float32, eager, the stored post-processing).
MASKS_SHA256 = "26d747330e2a7d1b2cd751f4ad6a4a93301476a80cf227c325868f4b5cf7fe2f"
#: sha256 of the shipped weights file, as the model card states it.
WEIGHTS_SHA256 = "5f7cddec1c594fe312b76bb1552d706d412b5a004cf99490e7bafe44bd5f6f2b"

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def phantom_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 256 x 256 phantom patient (seed 0), the size of a kaggle_3m slice."""
    root = synthesise_dataset(tmp_path_factory.mktemp("bundled") / "kaggle_3m", 1, slices=(12, 12), size=256)
    return next(p for p in root.iterdir() if p.is_dir())


def _slice_number(path: Path) -> int:
    return int(path.name.rsplit("_", 2)[-2])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_weights_ship_with_the_package_and_match_the_card():
    path = bundled_path("lgg-unet")
    assert path.parent.name == "weights" and path.stat().st_size < 8 * 2**20  # a few MB of float16
    assert _sha256(path.read_bytes()) == WEIGHTS_SHA256
    assert WEIGHTS_SHA256 in model_card("lgg-unet")


def test_the_weights_are_float16_and_load_without_pickled_code():
    state = torch.load(bundled_path("lgg-unet"), map_location="cpu", weights_only=True)
    floats = [t for t in state["state_dict"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)


def test_the_masks_of_a_phantom_match_the_stored_checksum(phantom_patient: Path):
    segmenter = Segmenter.from_checkpoint(resolve_model("lgg-unet"), bf16=False, graph_fusion=False)
    masks = segmenter.predict_volume(read_volume(phantom_patient)).astype(np.uint8)
    assert masks.shape == (12, 256, 256)
    assert _sha256(masks.tobytes()) == MASKS_SHA256
    # and the masks are right, not just unchanged: the phantom's tumour is found
    truth = np.stack([read_mask(p) > 0 for p in sorted(phantom_patient.glob("*_mask.tif"), key=_slice_number)])
    assert 2 * (truth & (masks > 0)).sum() / (truth.sum() + masks.sum()) > 0.9


def test_the_bundled_model_segments_real_patients(real_patients: Path):
    """A phantom pins the masks but is no check of accuracy (healthy models miss some phantoms): the
    bundled model must find the tumour of real kaggle_3m patients (training patients of it, so the bar
    is high; a model with broken BatchNorm statistics once gave 0 here)."""
    segmenter = Segmenter.from_checkpoint(resolve_model("lgg-unet"), bf16=False)
    for patient in sorted(p for p in real_patients.iterdir() if p.is_dir()):
        masks = segmenter.predict_volume(read_volume(patient))
        truth = np.stack([read_mask(p) > 0 for p in sorted(patient.glob("*_mask.tif"), key=_slice_number)])
        assert 2 * (truth & masks).sum() / (truth.sum() + masks.sum()) > 0.7, patient.name


def test_predict_by_name_writes_the_same_masks(phantom_patient: Path, tmp_path: Path):
    out = tmp_path / "pred"
    assert main(["predict", "--model", "lgg-unet", "--no-bf16", str(phantom_patient), "--out", str(out)]) == 0
    written = sorted(out.rglob("*_mask.*"))
    assert len(written) == 12
    expected = Segmenter.from_checkpoint(bundled_path("lgg-unet"), bf16=False).predict_volume(
        read_volume(phantom_patient)
    )
    by_number = sorted(written, key=_slice_number)
    np.testing.assert_array_equal(np.stack([read_mask(p) > 0 for p in by_number]), expected)


def test_the_card_is_the_docs_card_and_lists_the_essentials():
    card = model_card("lgg-unet")
    assert card == (REPO / "docs" / "model-card.md").read_text(encoding="utf-8")
    for needed in ("gliomaseg train", "90", "Not for clinical use", "Known failure modes", "licence"):
        assert needed.lower() in card.lower(), needed


def test_an_unknown_name_lists_the_bundled_models():
    with pytest.raises(GliomasegError, match="lgg-unet"):
        bundled_path("lgg-resunet")
    assert set(BUNDLED) == {"lgg-unet"}


# ------------------------------------------------------------------ the bundled model in evaluate and export
def _new_patients(root: Path, rename_to: str | None = None) -> Path:
    """Two phantom patients (never seen by the bundled model); ``rename_to``: the second one takes that id."""
    data = synthesise_dataset(root / "kaggle_3m", 2, slices=(6, 6), size=64)
    if rename_to is not None:
        old = sorted(p for p in data.iterdir() if p.is_dir())[1]
        new = data / rename_to
        new.mkdir()
        for f in old.iterdir():
            f.rename(new / f.name.replace(old.name, rename_to))
        old.rmdir()
        (data / "data.csv").unlink()  # its Patient column names the old id
    return data


def test_evaluate_the_bundled_model_on_new_patients_here_without_false_warnings(tmp_path, monkeypatch, capsys):
    data = _new_patients(tmp_path)
    work = tmp_path / "here"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["evaluate", "--model", "lgg-unet", "--data", str(data), "--no-figures", "--no-bf16"]
    # without --split all: the model's splits file is of the machine it was trained on; say what to do instead
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--split all" in err and "--splits FILE" in err and "/work/lgg" not in err, err
    assert main([*argv, "--split", "all"]) == 0
    summary = json.loads((work / "eval_all" / "summary.json").read_text())
    assert summary["n_patients"] == 2 and summary["warnings"] == []  # nobody here was seen in training
    weights = bundled_path("lgg-unet").parent
    assert sorted(p.name for p in weights.iterdir() if p.name != "__pycache__") == [
        "lgg-unet.md",
        "lgg-unet.patients.json",
        "lgg-unet.pt",
        "lgg-unet.quality-flip.json",
        "lgg-unet.quality.json",
    ]  # nothing written into the package


def test_evaluate_the_bundled_model_names_its_training_patients(tmp_path):
    from gliomaseg.evaluation import evaluate

    trained = json.loads((bundled_path("lgg-unet").parent / "lgg-unet.patients.json").read_text())
    assert len(trained) == 90 == len(set(trained))  # the 90 lgg-dev patients, as the model card says
    data = _new_patients(tmp_path, rename_to=trained[0])
    summary = evaluate(
        resolve_model("lgg-unet"), data=data, split="all", out=tmp_path / "ev", figures=False, progress=False
    ).summary
    (warning,) = summary["warnings"]
    assert f"1 of the 2 evaluated patients were used to train the model ({trained[0]})" in warning


def test_export_the_bundled_model_writes_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", "lgg-unet"]) == 0
    assert (tmp_path / "lgg-unet.onnx").is_file()
    assert not list(bundled_path("lgg-unet").parent.glob("*.onnx"))
    assert capsys.readouterr().out.startswith("wrote lgg-unet.onnx")


def test_models_info_into_a_closed_pipe_is_quiet():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "gliomaseg", "models", "--info", "lgg-unet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
