"""2.5D input end to end on the phantoms: a model trained with neighbouring slices as channels
(``context_slices: 1``) is described by its own model file, and ``predict``, ``evaluate`` and the ONNX
export stack the same neighbours; single-slice model files (without the setting) are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from tests.training.tiny_config import tiny_config

from gliomaseg.checkpoint import load_checkpoint, load_model
from gliomaseg.data.normalise import PreprocessConfig, preprocess_volume
from gliomaseg.evaluation import evaluate
from gliomaseg.inference import Segmenter
from gliomaseg.inference.export import export_onnx
from gliomaseg.inference.inputs import read_volume
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.training import train
from gliomaseg.training.config import resolve_config

SIZE = 32


@pytest.fixture(scope="module")
def run_dir(phantoms: Path, phantom_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real training run with one neighbour on each side (9 input channels)."""
    runs = tmp_path_factory.mktemp("context") / "runs"
    cfg = tiny_config(phantoms, phantom_workdir, runs, size=SIZE, augment="robust", context_slices=1)
    return train(cfg)


def _patient(phantoms: Path) -> Path:
    return sorted(p for p in phantoms.iterdir() if p.is_dir())[0]


def _reference_proba(model_path: Path, volume: np.ndarray) -> np.ndarray:
    """The probabilities written out by hand: per-volume normalisation, resize, neighbours, eager network."""
    model, payload = load_model(model_path)
    images = preprocess_volume(volume, PreprocessConfig.from_dict(payload["preprocess"]))
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
    proba = F.interpolate(torch.sigmoid(logits), size=volume.shape[1:3], mode="bilinear", align_corners=False)
    return proba[:, 0].numpy()


def test_the_model_file_holds_the_neighbours_it_was_trained_with(run_dir: Path) -> None:
    payload = load_checkpoint(run_dir / "best.pt")
    assert payload["model"]["kwargs"]["in_channels"] == 9
    assert payload["preprocess"] == {"size": SIZE, "normalisation": "zscore", "context_slices": 1}
    assert payload["config"]["context_slices"] == 1
    model, _ = load_model(run_dir / "best.pt")
    assert model(torch.zeros(2, 9, SIZE, SIZE)).shape == (2, 1, SIZE, SIZE)


@pytest.mark.parametrize("field_of_view", [False, True])
def test_segmenter_stacks_the_neighbours_of_the_whole_volume(run_dir: Path, phantoms: Path, field_of_view: bool):
    volume = read_volume(_patient(phantoms))
    seg = Segmenter.from_checkpoint(run_dir / "best.pt", bf16=False).with_field_of_view(field_of_view)
    assert seg.preprocess.context_slices == 1
    proba = seg.predict_proba(volume)
    assert proba.shape == volume.shape[:3]
    if not field_of_view:
        np.testing.assert_allclose(proba, _reference_proba(run_dir / "best.pt", volume), atol=1e-4)
    # one slice given alone is its own neighbour on both sides
    assert seg.predict_proba(volume[2]).shape == (1, *volume.shape[1:3])


def test_predict_and_evaluate_run_on_the_model_file(run_dir: Path, phantoms: Path, tmp_path: Path) -> None:
    table = predict_inputs(run_dir / "best.pt", [_patient(phantoms)], tmp_path / "pred", bf16=False)
    assert len(table) == 1 and Path(table["mask"].iloc[0]).exists()
    result = evaluate(run_dir / "best.pt", split="val", out=tmp_path / "ev", figures=False, progress=False, n_boot=50)
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["preprocess"]["context_slices"] == 1
    assert summary["n_patients"] >= 1


def test_onnx_export_takes_nine_channels_and_predicts_as_torch(run_dir: Path, phantoms: Path, tmp_path: Path):
    result = export_onnx(run_dir / "best.pt", tmp_path / "best.onnx")
    assert result.max_abs_diff <= 1e-3
    dims = [d.dim_value or d.dim_param for d in onnx.load(result.path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 9, SIZE, SIZE]
    volume = read_volume(_patient(phantoms))
    torch_proba = Segmenter.from_checkpoint(run_dir / "best.pt", bf16=False).predict_proba(volume)
    onnx_seg = Segmenter.from_onnx(result.path)
    assert onnx_seg.preprocess.context_slices == 1
    np.testing.assert_allclose(onnx_seg.predict_proba(volume), torch_proba, atol=1e-4)


def test_single_slice_model_files_without_the_setting_are_unchanged(model_file, phantoms: Path) -> None:
    path = model_file(randomise_bn=True)  # written as before the setting existed: no context_slices key
    assert "context_slices" not in load_checkpoint(path)["preprocess"]
    seg = Segmenter.from_checkpoint(path, bf16=False)
    assert seg.preprocess.context_slices == 0 and seg.preprocess.channels == 3
    volume = read_volume(_patient(phantoms))
    np.testing.assert_allclose(seg.predict_proba(volume), _reference_proba(path, volume), atol=1e-4)


@pytest.mark.parametrize("value", [4, -1])
def test_training_refuses_context_slices_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match=f"context_slices={value}: must be an int from 0"):
        resolve_config({"context_slices": value})
