"""Tests of the ONNX export: metadata, dynamic batch, parity with PyTorch, and ``predict`` on the export."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from gliomaseg import __version__
from gliomaseg.checkpoint import load_model
from gliomaseg.cli import main
from gliomaseg.inference.export import ONNX_FORMAT, export_onnx
from gliomaseg.inference.predict import predict_inputs

META = {
    "model": {"name": "unet", "kwargs": {"features": 4}},
    "preprocess": {"size": 32, "normalisation": "zscore"},
    "postprocess": {"threshold": 0.45, "min_size": 3, "largest_component": False, "tta": False},
    "split_id": "abc123/fold0",
    "epoch": 7,
    "metrics": {"val_dice": 0.5},
}


@pytest.fixture(scope="module")
def exported(model_file, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    # Non-trivial BatchNorm statistics, so eval-mode folding is really exercised.
    folder = tmp_path_factory.mktemp("export")
    ckpt = model_file(folder / "best.pt", randomise_bn=True, **META)
    result = export_onnx(ckpt, folder / "best.onnx")
    return ckpt, result.path, result.max_abs_diff


def test_export_metadata_and_names(exported: tuple[Path, Path, float]):
    ckpt, onnx_path, diff = exported
    assert onnx_path == ckpt.with_suffix(".onnx") and 0.0 <= diff <= 1e-3
    proto = onnx.load(onnx_path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["format"] == ONNX_FORMAT
    for key in ("model", "preprocess", "postprocess", "split_id", "epoch", "metrics"):
        assert json.loads(props[key]) == META[key]
    assert json.loads(props["package_version"]) == __version__
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch_with_dynamic_batch(exported: tuple[Path, Path, float], batch: int):
    ckpt, onnx_path, _ = exported
    model, _ = load_model(ckpt)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert got.shape == (batch, 1, 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_export_refuses_overwrite_and_bad_target(exported: tuple[Path, Path, float], tmp_path: Path):
    ckpt, onnx_path, _ = exported
    with pytest.raises(ValueError, match="--overwrite"):
        export_onnx(ckpt, onnx_path)
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(ckpt, tmp_path / "model.bin")
    with pytest.raises(ValueError, match="not a gliomaseg model"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        export_onnx(tmp_path / "junk.pt", tmp_path / "junk.onnx")
    assert not (tmp_path / "junk.onnx").exists()


def test_predict_on_onnx_equals_checkpoint(exported: tuple[Path, Path, float], tmp_path: Path):
    ckpt, onnx_path, _ = exported
    rng = np.random.default_rng(0)
    folder = tmp_path / "p"
    folder.mkdir()
    for n in range(1, 4):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / f"p_{n}.tif")
    nib.save(
        nib.Nifti1Image(rng.normal(size=(40, 36, 3)).astype(np.float32), np.diag([2, 2, 4, 1.0])),
        tmp_path / "v.nii.gz",
    )
    inputs = [folder, tmp_path / "v.nii.gz"]
    a = predict_inputs(ckpt, inputs, tmp_path / "pt")
    b = predict_inputs(onnx_path, inputs, tmp_path / "onnx")
    files = ["mask", "seg", "overview", "probabilities", "overlays"]  # paths differ: pt/ and onnx/
    # The probabilities differ in the last float digits, and the quality score counts voxels between 0.2
    # and 0.8 (the uncertain band): an untrained net on noise sits near those edges, so a few voxels may
    # cross them. The flag (compared below with the other columns) and the score to 0.01 must agree.
    np.testing.assert_allclose(a.pop("quality_score"), b.pop("quality_score"), atol=0.01)
    assert a.drop(columns=files).equals(b.drop(columns=files))
    for n in range(1, 4):
        name = f"p/p_{n}_mask.tif"
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "pt" / name)), np.asarray(Image.open(tmp_path / "onnx" / name))
        )
    np.testing.assert_array_equal(
        np.asarray(nib.load(tmp_path / "pt" / "v_mask.nii.gz").dataobj),
        np.asarray(nib.load(tmp_path / "onnx" / "v_mask.nii.gz").dataobj),
    )


def test_cli_export(exported: tuple[Path, Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    ckpt, _, _ = exported
    target = tmp_path / "m.onnx"
    assert main(["export", "--model", str(ckpt), "--format", "onnx", "--out", str(target), "--opset", "17"]) == 0
    assert "max abs diff" in capsys.readouterr().out and target.is_file()
    assert main(["export", "--model", str(ckpt), "--out", str(target)]) == 2
    assert main(["export", "--model", str(ckpt), "--out", str(target), "--overwrite"]) == 0


def test_cli_export_writes_here_by_default_and_prints_one_clean_line(
    exported: tuple[Path, Path, float], tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str], caplog
):
    ckpt, _, _ = exported
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        assert main(["export", "--model", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "best.onnx").is_file()  # the current folder, not beside the model file
    assert out.count("\n") == 1 and out.startswith("wrote best.onnx (opset 17)") and "[" not in out, out
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO], "the line was logged too"


def test_fp16_model_file_is_half_the_size_and_predicts_alike(model_file, tmp_path):
    import numpy as np

    from gliomaseg.checkpoint import load_checkpoint, save_half_precision
    from gliomaseg.inference import Segmenter

    full = model_file(randomise_bn=True, features=8)
    half = save_half_precision(full, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    payload = load_checkpoint(half)
    assert payload["weights_dtype"] == "float16" and payload["state_dict"]["conv.weight"].dtype == torch.float16
    volume = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    a = Segmenter.from_checkpoint(full, bf16=False).predict_proba(volume)
    b = Segmenter.from_checkpoint(half, bf16=False).predict_proba(volume)
    assert np.abs(a - b).max() < 1e-2
    assert main(["export", "--model", str(full), "--format", "fp16", "--out", str(tmp_path / "cli.pt")]) == 0
    assert main(["export", "--model", str(full), "--format", "fp16", "--out", str(tmp_path / "cli.pt")]) == 2  # exists
