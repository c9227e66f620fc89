"""Inference speed of the ``predict`` path, end to end, against naive eager PyTorch batch 1.

Every variant runs the whole :meth:`gliomaseg.inference.Segmenter.predict_proba` pipeline
(per-volume normalisation, resize, network, sigmoid, resize back) on the same 256 x 256 phantom
volume, so the figures are end-to-end slices per second; only the way the network runs differs.
Variants are timed round-robin (best of ``repeats``) so that a change of load hits all alike.
Mask agreement with the naive float32 path is reported for each (Dice of the thresholded masks).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg.checkpoint import load_model, save_checkpoint
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference import Segmenter
from gliomaseg.inference.export import export_onnx
from gliomaseg.training.models import create_model

__all__ = ["NAIVE", "inference_section"]

NAIVE = "naive eager fp32 batch 1 (no_grad)"


def _cpu_model_file(folder: Path) -> Path:
    """An untrained model file with the ``--preset cpu`` architecture (speed does not depend on weights)."""
    torch.manual_seed(0)
    model = create_model("unet", features=16)
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding is really exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    meta = {
        "model": {"name": "unet", "kwargs": {"features": 16}},
        "preprocess": PreprocessConfig(size=128).to_dict(),
        "postprocess": PostprocessConfig().to_dict(),
        "split_id": "benchmark-untrained",
    }
    return save_checkpoint(folder / "cpu_untrained.pt", model, meta)


def _naive(model: torch.nn.Module, preprocess: PreprocessConfig) -> Segmenter:
    net = copy.deepcopy(model)

    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(images).float()

    return Segmenter(logits_fn, preprocess, batch_size=1, backend="naive")


def _variants(ckpt: Path, onnx_path: Path, quick: bool) -> dict[str, Segmenter]:
    model, payload = load_model(ckpt)
    variants = {
        NAIVE: _naive(model, PreprocessConfig.from_dict(payload["preprocess"])),
        "default (Segmenter.from_checkpoint)": Segmenter.from_checkpoint(ckpt),
        "fused graph bf16, batch 8": Segmenter.from_checkpoint(ckpt, bf16=True),
        "fused graph fp32, batch 8": Segmenter.from_checkpoint(ckpt, bf16=False),
        "eager fp32 (graph_fusion=False), batch 8": Segmenter.from_checkpoint(ckpt, graph_fusion=False, bf16=False),
        "onnxruntime, batch 8": Segmenter.from_onnx(onnx_path),
    }
    if not quick:
        for batch in (4, 16, 32):
            variants[f"fused graph fp32, batch {batch}"] = Segmenter.from_checkpoint(ckpt, bf16=False, batch_size=batch)
            variants[f"fused graph bf16, batch {batch}"] = Segmenter.from_checkpoint(ckpt, bf16=True, batch_size=batch)
        variants["onnxruntime, batch 1"] = Segmenter.from_onnx(onnx_path, batch_size=1)
    return variants


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def inference_section(checkpoint: str | None, *, quick: bool, slices: int = 40, repeats: int = 5) -> dict[str, Any]:
    """Slices/s of each inference path on one phantom volume, and its agreement with naive fp32.

    Args:
        checkpoint: a trained model file (agreement figures are only meaningful for one); None
            builds an untrained network of the ``cpu`` preset's architecture.
        quick: only the main paths.
        slices: slices of the 256 x 256 volume.
        repeats: timed passes per variant (best kept).
    """
    volume, _ = synthesise_volume(np.random.default_rng(0), slices, 256)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(checkpoint) if checkpoint else _cpu_model_file(Path(tmp))
        onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx").path
        variants = _variants(ckpt, onnx_path, quick)
        probas = {name: seg.predict_proba(volume) for name, seg in variants.items()}  # warm-up + outputs
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(3 if quick else repeats):
            for name, seg in variants.items():
                t0 = time.perf_counter()
                seg.predict_proba(volume)
                best[name] = min(best[name], time.perf_counter() - t0)
    naive_rate = slices / best[NAIVE]
    rows = []
    for name, seconds in sorted(best.items(), key=lambda kv: kv[1]):
        rows.append(
            {
                "path": name,
                "backend": variants[name].backend,
                "slices_per_s": round(slices / seconds, 1),
                "vs_naive": round(slices / seconds / naive_rate, 2),
                "max_abs_prob_diff_vs_naive": float(np.abs(probas[name] - probas[NAIVE]).max()),
                "mask_dice_vs_naive": round(_dice(probas[name] >= 0.5, probas[NAIVE] >= 0.5), 5),
            }
        )
    default = next(r for r in rows if r["path"].startswith("default"))
    return {
        "checkpoint": str(checkpoint or "untrained unet features=16 @128 (cpu preset architecture)"),
        "volume": f"{slices} x 256 x 256 x 3 phantom",
        "paths": rows,
        "default_backend": default["backend"],
        "default_vs_naive": default["vs_naive"],
    }
