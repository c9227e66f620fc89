"""``predict`` of one 155-slice volume end to end, against the network path of the same run.

A user's ``gliomaseg predict scan.nii.gz`` reads and scales the NIfTI, runs the network,
post-processes, writes the mask in the input's geometry, the overview figure, ``cases.csv`` and
``components.csv``. This section times exactly that call (:func:`gliomaseg.inference.predict.predict_inputs`
with a loaded model: loading the model is a one-off per command, reported separately) on a 155 x
256 x 256 phantom head stored as int16 ``.nii.gz`` in L-P-S order (BraTS-like), and compares it
with the network path (:meth:`Segmenter.predict_proba` on the same volume, and the inference
section's default path). The target of issue 24: end to end >= 0.7x the network path. Also timed:
the same call with per-slice overlays (the old default) and each stage alone.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.evaluation.postprocess import postprocess_volume
from gliomaseg.inference import Segmenter
from gliomaseg.inference.inputs import discover_inputs, read_case
from gliomaseg.inference.outputs import OutputOptions, write_case
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.pretrained import bundled_path

__all__ = ["TARGET_RATIO", "predict_section"]

#: Issue 24: ``predict`` end to end reaches at least this share of the network path's slices/s.
TARGET_RATIO = 0.7


def _phantom_nifti(path: Path, slices: int, size: int) -> Path:
    volume, _ = synthesise_volume(np.random.default_rng(0), slices, size)
    flair = np.moveaxis(volume[..., 1], 0, 2)[::-1, ::-1]  # stored L-P-S, as BraTS-style files are
    data = (flair.astype(np.int16) * 9 + 20).astype(np.int16)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.diag([-1.0, -1.0, 1.0, 1.0])), path)
    return path


def _round_robin(tasks: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time of each task, taken in turns so that a change of load hits all alike."""
    best = dict.fromkeys(tasks, float("inf"))
    for _ in range(repeats):
        for name, task in tasks.items():
            t0 = time.perf_counter()
            task()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _stages(seg: Segmenter, nifti: Path, out: Path, repeats: int) -> dict[str, float]:
    """Best seconds of each stage of one case: read, network, post-processing, writing."""
    (case,) = discover_inputs([nifti], out)
    read_case(case)
    probs = seg.predict_proba(case.volume)  # type: ignore[arg-type]
    mask = postprocess_volume(probs, seg.postprocess)
    options = OutputOptions()
    return _round_robin(
        {
            # the file itself each time: read_case keeps the scan it read on case.image
            "read_and_scale": lambda: (setattr(case, "image", None), read_case(case)),
            "network": lambda: seg.predict_proba(case.volume),  # type: ignore[arg-type]
            "postprocess": lambda: postprocess_volume(probs, seg.postprocess),
            "write_mask_overview_tables": lambda: write_case(case, mask, options=options, overwrite=True),
        },
        repeats,
    )


def predict_section(
    inference: dict[str, Any], *, quick: bool, slices: int = 155, size: int = 256, repeats: int = 5
) -> dict[str, Any]:
    """Slices/s of ``predict`` end to end on one volume, and its ratio to the network path.

    Args:
        inference: the inference section of the same run (its default path is the reference).
        quick: fewer repeats, and no per-slice overlay timing.
        slices: slices of the volume.
        size: its in-plane size.
        repeats: timed passes (best kept).
    """
    repeats = 3 if quick else repeats
    t0 = time.perf_counter()
    seg = Segmenter.from_checkpoint(bundled_path("lgg-unet"))
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        nifti = _phantom_nifti(Path(tmp) / "head.nii.gz", slices, size)
        (case,) = discover_inputs([nifti], Path(tmp))
        volume = read_case(case)
        tasks: dict[str, Callable[[], Any]] = {
            "network": lambda: seg.predict_proba(volume),
            "predict": lambda: predict_inputs(seg, [nifti], Path(tmp) / "out", overwrite=True),
        }
        if not quick:
            tasks["predict_with_overlays"] = lambda: predict_inputs(
                seg, [nifti], Path(tmp) / "out_overlays", overwrite=True, overlays=True
            )
        for task in tasks.values():  # warm-up
            task()
        best = _round_robin(tasks, repeats)
        stages = _stages(seg, nifti, Path(tmp) / "stages", repeats)
        written = sorted(p.name for p in (Path(tmp) / "out").iterdir())
    default = next(r for r in inference["paths"] if r["path"].startswith("default"))
    rate = {name: round(slices / seconds, 1) for name, seconds in best.items()}
    return {
        "volume": f"{slices} x {size} x {size} int16 .nii.gz, stored L-P-S, 1 mm; model lgg-unet ({seg.backend})",
        "outputs": written,
        "model_load_seconds": round(load_s, 2),
        "network_same_volume_slices_per_s": rate["network"],
        "predict_slices_per_s": rate["predict"],
        "predict_with_overlays_slices_per_s": rate.get("predict_with_overlays"),
        "network_path_slices_per_s": default["slices_per_s"],
        "ratio_vs_network_path": round(rate["predict"] / default["slices_per_s"], 2),
        "ratio_vs_network_same_volume": round(rate["predict"] / rate["network"], 2),
        "target_ratio": TARGET_RATIO,
        "stage_seconds": {k: round(v, 4) for k, v in stages.items()},
    }
