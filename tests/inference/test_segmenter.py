"""Tests of ``Segmenter``: the default (fast) path equals plain eager PyTorch, ONNX backend, dispatch."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomaseg import __version__
from gliomaseg.checkpoint import load_model
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference import Segmenter, load_segmenter, model_algorithm
from gliomaseg.inference.segmenter import MODEL_FILE

# What conftest's model files store (they differ from the defaults only by their weights).
META = {"model": {"name": "unet", "kwargs": {"features": 4}}}


@pytest.fixture(scope="module")
def files(model_file, onnx_file: Path) -> tuple[Path, Path]:
    """A U-Net with randomised BatchNorm (so folding it is really exercised) and its ONNX export."""
    return model_file(randomise_bn=True), onnx_file


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)


def _naive(ckpt: Path, batch_size: int = 1) -> Segmenter:
    """Plain eager fp32 PyTorch, the reference every faster path must match."""
    model, payload = load_model(ckpt)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return Segmenter(logits_fn, PreprocessConfig.from_dict(payload["preprocess"]), batch_size=batch_size)


def test_default_path_matches_naive_eager(files: tuple[Path, Path], volume: np.ndarray):
    ckpt, _ = files
    reference = _naive(ckpt).predict_proba(volume)
    proba = Segmenter.from_checkpoint(ckpt, bf16=False).predict_proba(volume)
    assert proba.shape == (5, 40, 48) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, reference, atol=1e-4)
    assert proba.min() >= 0.0 and proba.max() <= 1.0


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available(),
    reason="oneDNN Graph fusion is only expected on x86-64 CPU builds of torch",
)
def test_default_cpu_path_is_the_fused_graph(files: tuple[Path, Path], volume: np.ndarray):
    ckpt, _ = files
    fused = Segmenter.from_checkpoint(ckpt, device="cpu", batch_size=2, bf16=False)  # 5 slices: last chunk padded
    eager = Segmenter.from_checkpoint(ckpt, device="cpu", batch_size=2, graph_fusion=False)
    assert (fused.backend, eager.backend) == ("torchscript-onednn", "eager")
    assert not torch.jit.onednn_fusion_enabled()  # the global switch is restored after loading...
    np.testing.assert_allclose(fused.predict_proba(volume), eager.predict_proba(volume), atol=1e-4)
    assert not torch.jit.onednn_fusion_enabled()  # ...and after predicting
    tta = fused.with_postprocess(tta=True)
    assert tta.backend == "torchscript-onednn"
    np.testing.assert_allclose(
        tta.predict_proba(volume), _naive(ckpt).with_postprocess(tta=True).predict_proba(volume), atol=1e-4
    )


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available(),
    reason="oneDNN Graph fusion is only expected on x86-64 CPU builds of torch",
)
def test_bf16_runs_a_fused_bf16_graph_close_to_float32(files: tuple[Path, Path], volume: np.ndarray):
    ckpt, _ = files
    bf16 = Segmenter.from_checkpoint(ckpt, device="cpu", bf16=True, batch_size=2)
    assert bf16.backend == "torchscript-onednn-bf16"
    # bf16 keeps 8 bits of mantissa: probabilities move by ~1e-2, not more
    reference = _naive(ckpt).predict_proba(volume)
    assert np.abs(bf16.predict_proba(volume) - reference).max() < 0.05
    eager_bf16 = Segmenter.from_checkpoint(ckpt, device="cpu", bf16=True, graph_fusion=False)
    assert eager_bf16.backend == "eager"
    assert np.abs(eager_bf16.predict_proba(volume) - reference).max() < 0.05
    assert Segmenter.from_onnx(files[1]).backend == "onnxruntime"


def test_default_precision_follows_the_cpu(files: tuple[Path, Path]):
    from gliomaseg.devices import cpu_has_native_bf16

    backend = Segmenter.from_checkpoint(files[0], device="cpu").backend
    fused = platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
    if fused:
        assert backend == ("torchscript-onednn-bf16" if cpu_has_native_bf16() else "torchscript-onednn")
    assert Segmenter.from_checkpoint(files[0], device="cpu", graph_fusion=False).backend == "eager"


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_batch_size_does_not_change_results(files: tuple[Path, Path], volume: np.ndarray, batch_size: int):
    ckpt, _ = files
    reference = _naive(ckpt).predict_proba(volume)
    got = Segmenter.from_checkpoint(ckpt, batch_size=batch_size, bf16=False).predict_proba(volume)
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_onnx_backend_matches_pytorch(files: tuple[Path, Path], volume: np.ndarray):
    ckpt, onnx_path = files
    seg = Segmenter.from_onnx(onnx_path, threads=1, batch_size=3)
    assert seg.preprocess == PreprocessConfig(size=32)
    assert seg.postprocess == PostprocessConfig()
    assert seg.meta["model"] == META["model"]
    np.testing.assert_allclose(seg.predict_proba(volume), _naive(ckpt).predict_proba(volume), atol=1e-4)
    tta = seg.with_postprocess(tta=True)
    np.testing.assert_allclose(
        tta.predict_proba(volume), _naive(ckpt).with_postprocess(tta=True).predict_proba(volume), atol=1e-4
    )


def test_load_segmenter_dispatch(files: tuple[Path, Path], volume: np.ndarray):
    ckpt, onnx_path = files
    a = load_segmenter(ckpt, device="cpu", batch_size=4)
    b = load_segmenter(onnx_path, postprocess=PostprocessConfig(threshold=0.3))
    assert a.batch_size == 4 and b.postprocess.threshold == 0.3
    assert a.predict_volume(volume).dtype == bool
    with pytest.raises(ValueError, match="bf16"):
        load_segmenter(onnx_path, bf16=True)
    with pytest.raises(ValueError, match="CPU"):
        load_segmenter(onnx_path, device="cuda")
    with pytest.raises(ValueError, match="threads"):
        load_segmenter(ckpt, threads=2)
    with pytest.raises(ValueError, match="graph_fusion"):
        load_segmenter(onnx_path, graph_fusion=False)
    assert load_segmenter(ckpt, device="cpu", graph_fusion=False).backend == "eager"


def test_from_onnx_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        Segmenter.from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.onnx"):
        Segmenter.from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="threads"):
        Segmenter.from_onnx(tmp_path / "junk.onnx", threads=0)


def test_predict_proba_rejects_bad_volumes(files: tuple[Path, Path]):
    seg = Segmenter.from_checkpoint(files[0])
    with pytest.raises(ValueError, match="uint8"):
        seg.predict_proba(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="S x H x W x 3"):
        seg.predict_proba(np.zeros((2, 32, 32, 1), np.uint8))


def test_model_algorithm_names_the_model_file_and_its_hash(files: tuple[Path, Path], model_file, tmp_path: Path):
    for path in files:  # a PyTorch model file and an ONNX export
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        seg = load_segmenter(path)
        assert seg.meta[MODEL_FILE] == {"name": path.stem, "sha256": digest}
        expected = (f"gliomaseg {path.stem} (unet)", f"sha256:{digest[:12]}, gliomaseg {__version__}")
        assert model_algorithm(seg) == model_algorithm(seg.with_postprocess(tta=True)) == expected
    trained = model_file(tmp_path / "best.pt", seed=3, split_id="565b4c0391dd:fold2")
    name, version = model_algorithm(load_segmenter(trained, graph_fusion=False))
    assert name == "gliomaseg best (unet)"
    assert version == f"sha256:{hashlib.sha256(trained.read_bytes()).hexdigest()[:12]}, gliomaseg {__version__}, " + (
        "565b4c0391dd:fold2"
    )
    # no file (a bare logits function): what its metadata say, still no "unknown"
    bare = Segmenter(lambda x: x[:, :1], PreprocessConfig(size=32), meta={"model": {"name": "unet"}})
    assert model_algorithm(bare) == ("gliomaseg unet", f"gliomaseg {__version__}")
