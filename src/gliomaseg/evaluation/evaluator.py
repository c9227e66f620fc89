"""Evaluate a model file on a split: metrics at the data's own resolution, tables, figures, a report.

For every patient of the chosen split the slices are read at their own size (256 x 256 for
kaggle_3m), segmented with :meth:`gliomaseg.inference.Segmenter.predict_proba` (which resizes the
probabilities back to that size), post-processed as configured (threshold, small 3D components,
largest 3D component; flip TTA at prediction time) and compared with the ground truth per slice
and per patient volume with :mod:`gliomaseg.evaluation.metrics` and its empty-case convention.

Outputs (in ``out``, by default ``eval_<split>/`` in the current folder):

- ``summary.json``: settings (checkpoint, model, preprocessing, post-processing, split and its id
  checked against the checkpoint's), counts, time, aggregates per metric (mean, median, std and a
  bootstrap 95% CI) over patient volumes and over tumour slices, empty-case counts, warnings and
  one record per patient. NaN is written as ``null``.
- ``per_patient.csv`` (one row per patient, with its quality signals, ``quality_score`` and
  ``quality_flag``: :mod:`gliomaseg.inference.quality`), ``per_slice.csv`` (one row per slice).
- with ``shifts``: ``shifts.csv`` and a ``shifts`` section of the summary, the same patients under
  named distribution shifts (:mod:`gliomaseg.evaluation.shift_eval`).
- ``figures/``: overlays of the best, median and worst patients (and chosen ones), the Dice
  distribution, learning curves when the checkpoint sits in its run folder, and ``gifs/`` with one
  animation per patient.
- ``report.html``: everything above in one self-contained file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gliomaseg import __version__
from gliomaseg.data.index_table import read_patient
from gliomaseg.evaluation.aggregate import empty_cases, summarise_table
from gliomaseg.evaluation.ensemble import ensemble_summary, member_dice
from gliomaseg.evaluation.metrics import binary_metrics, dice_from_counts, slice_metrics
from gliomaseg.evaluation.plan import (
    EvaluationPlan,
    check_output_folder,
    plan_evaluation,
    prepare_output_folder,
    recorded_patients,
    split_matches,
)
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume
from gliomaseg.evaluation.run_figures import dice_text, draw_figures, ranked_patients
from gliomaseg.evaluation.shift_eval import score_shifts, shift_summary
from gliomaseg.evaluation.shifts import resolve_shifts
from gliomaseg.inference.pretrained import bundled_training_patients
from gliomaseg.inference.quality import quality_for_case
from gliomaseg.inference.segmenter import Segmenter, load_segmenter
from gliomaseg.utils import atomic_write, atomic_write_text, json_safe

__all__ = ["EVAL_FORMAT", "EvaluationResult", "evaluate"]

log = logging.getLogger(__name__)

EVAL_FORMAT = "gliomaseg-eval/1"
_READ_WORKERS = 2


def _patient_record(rows: pd.DataFrame, pred: np.ndarray, truth: np.ndarray, per_slice: pd.DataFrame) -> dict[str, Any]:
    volume = binary_metrics(pred, truth)
    case = per_slice["case"]
    tumour = case == "tumour"
    return {
        "patient_id": str(rows["patient_id"].iloc[0]),
        "patient": str(rows["patient"].iloc[0]),
        "site": str(rows["site"].iloc[0]),
        "n_slices": len(rows),
        "n_tumour_slices": int(tumour.sum()),
        "height": int(truth.shape[1]),
        "width": int(truth.shape[2]),
        **volume,
        "n_empty_truth_slices": int((~tumour).sum()),
        "n_false_positive_slices": int((case == "false_positive").sum()),
        "n_missed_tumour_slices": int((tumour & (per_slice["pred_pixels"] == 0)).sum()),
        "slice_dice_mean": float(per_slice.loc[tumour, "dice"].mean()) if tumour.any() else math.nan,
    }


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` wrote.

    Attributes:
        out: the output folder (``summary.json``, ``per_patient.csv``, ``per_slice.csv``,
            ``report.html``, ``figures/``).
        summary: the contents of ``summary.json``.
    """

    out: Path
    summary: dict[str, Any]

    @property
    def per_patient_dice(self) -> dict[str, float | None]:
        """Volume Dice of each evaluated patient (None where undefined: no tumour)."""
        return {r["patient_id"]: r["dice"] for r in self.summary["patients"]}


@dataclass
class _Scores:
    """Per-patient and per-slice results of the scoring stage, and what the figures need."""

    per_patient: pd.DataFrame
    per_slice: pd.DataFrame
    packed: dict[str, tuple[np.ndarray, tuple[int, ...]]]
    gifs: dict[str, Path]
    timing: dict[str, float]
    members: dict[str, list[float]]  # an ensemble's: patient id -> each member's volume Dice


def evaluate(
    checkpoint: str | Path | Sequence[str | Path],
    *,
    data: str | Path | None = None,
    split: str = "test",
    out: str | Path | None = None,
    index: str | Path | None = None,
    splits: str | Path | None = None,
    fold: int | None = None,
    postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
    patients: list[str] | None = None,
    figures: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 2000,
    bf16: bool | None = None,
    shifts: Sequence[str] = (),
    shift_seed: int = 0,
) -> EvaluationResult:
    """Evaluate a model file on one part of the splits and write tables, figures and a report.

    Stages: resolve the inputs (:func:`~gliomaseg.evaluation.plan.plan_evaluation`), score every
    patient, summarise over patients and slices, write the outputs.

    Args:
        checkpoint: a ``best.pt``/``last.pt`` model file, or several: an ensemble averaging their
            probabilities (the summary and report then compare it with each member).
        data: a kaggle_3m folder; indexed when neither ``index`` nor the run's index fits it.
        split: ``test``, ``val``, ``train`` (of ``fold``) or ``all`` (every patient of the index).
        out: output folder (default ``eval_<split>`` in the current folder; an ensemble's:
            ``ensemble_eval_<split>``); never beside the model file, which may be inside the package.
        index: an ``index.csv`` (default: the one of the checkpoint's training run).
        splits: a ``splits.json`` (default: the one of the checkpoint's training run).
        fold: fold for ``train``/``val`` (default: the checkpoint's).
        postprocess: post-processing (default: the checkpoint's stored settings), or a mapping of
            the settings to change from those (e.g. ``{"threshold": 0.7}``; works for ``.onnx`` too).
        patients: patients (folder ids or ``TCGA_<site>_<n>`` names) to draw overlays for, in
            addition to the best, median and worst.
        figures: draw figures and GIFs (the tables and ``report.html`` are always written).
        progress: show a tqdm progress bar over patients.
        overwrite: replace the results in an existing non-empty ``out``.
        device: ``auto``, ``cpu``, ``cuda``... for the network.
        batch_size: slices per forward pass.
        n_boot: bootstrap resamples for the confidence intervals.
        bf16: the network in bfloat16 (None: where the CPU computes it natively, as ``predict``
            does, so both give the same masks; False: float32 everywhere).
        shifts: also score every patient under these shifts (names of
            :data:`~gliomaseg.evaluation.shifts.SHIFTS`, ``all`` for every one): ``shifts.csv``.
        shift_seed: the shifts' seed (same seed, same shifted volumes).

    Returns:
        An :class:`EvaluationResult` (output folder and summary).

    Raises:
        GliomasegError: unknown split, missing index/splits, patients of the split absent from the
            index, unknown chosen patients or shifts, or a bad checkpoint.
        OutputExistsError: a non-empty ``out`` without ``overwrite``.

    Example:
        >>> result = evaluate("runs/unet__bce_dice__fold0/best.pt", split="test")  # doctest: +SKIP
        >>> result.summary["volume"]["metrics"]["dice"]["mean"]  # doctest: +SKIP
        0.817
    """
    t_start = time.perf_counter()
    shift_names = resolve_shifts(list(shifts))
    paths = [checkpoint] if isinstance(checkpoint, str | Path) else list(checkpoint)
    ckpt_paths = [Path(p).expanduser().resolve() for p in paths]
    changes = dict(postprocess) if isinstance(postprocess, Mapping) else None
    full = postprocess if isinstance(postprocess, PostprocessConfig) else None
    seg = load_segmenter(ckpt_paths, device=device, postprocess=full, batch_size=batch_size, bf16=bf16)
    if changes:
        # checked as a whole, so an unknown or invalid setting is named
        seg = seg.with_postprocess(**PostprocessConfig.from_dict({**seg.postprocess.to_dict(), **changes}).to_dict())
    ckpt_path = ckpt_paths[0]
    default_out = f"ensemble_eval_{split}" if len(ckpt_paths) > 1 else f"eval_{split}"
    out_dir = Path(out) if out is not None else Path(default_out)
    check_output_folder(out_dir, overwrite)  # before any slow work
    plan = plan_evaluation(
        seg.meta,
        split=split,
        data=data,
        index=index,
        splits=splits,
        fold=fold,
        patients=patients,
        progress=progress,
        recorded=_recorded(seg, ckpt_paths),
    )
    prepare_output_folder(out_dir, overwrite)
    scores = _score_patients(seg, plan, out_dir / "figures" / "gifs" if figures else None, progress)
    figure_list: list[tuple[str, Path]] = []
    if figures:
        t0 = time.perf_counter()
        figure_list = draw_figures(
            out_dir / "figures", scores.per_patient, scores.packed, plan, ckpt_path, seg.meta.get("epoch")
        )
        scores.timing["figures"] += time.perf_counter() - t0
    scores.timing["total"] = time.perf_counter() - t_start
    shifted = score_shifts(seg, plan, shift_names, seed=shift_seed, progress=progress) if shift_names else None
    if shifted is not None:
        scores.timing["shifts"] = shifted[1]
    summary = _summarise(seg, ckpt_path, plan, scores, n_boot)
    if shifted is not None:
        summary["shifts"] = shift_summary(shifted[0], scores.per_patient, seed=shift_seed, n_boot=n_boot)
        _write_csv(shifted[0], out_dir / "shifts.csv")
    if seg.members:
        summary["ensemble"] = ensemble_summary(ckpt_paths, scores.members, scores.per_patient)
    summary["figures"] = [str(p.relative_to(out_dir)) for _, p in figure_list]
    summary = json_safe(summary)
    _write_outputs(out_dir, summary, scores, plan, figure_list)
    return EvaluationResult(out=out_dir, summary=summary)


def _recorded(seg: Segmenter, paths: list[Path]) -> list[dict[str, list[str]] | None]:
    """Per model, the patients its file records it was trained and selected on; for a bundled model
    whose file predates that record, the list the package ships beside it."""
    members = seg.meta.get("ensemble") or [seg.meta]
    # an ONNX export of an ensemble is one file holding several members' records
    files: list[Path | None] = list(paths) if len(paths) == len(members) else [None] * len(members)
    out = []
    for meta, path in zip(members, files):
        record = recorded_patients(meta)
        if record is None and path is not None and (bundled := bundled_training_patients(path)) is not None:
            record = {"train": bundled, "val": []}
        out.append(record)
    return out


def _score_patients(seg: Segmenter, plan: EvaluationPlan, gif_dir: Path | None, progress: bool) -> _Scores:
    """Read, segment and score every patient of the plan (GIFs drawn on the way when ``gif_dir``)."""
    from gliomaseg.evaluation.figures import save_gif  # matplotlib: only when scoring

    rows_by_patient = plan.rows_by_patient()
    records: list[dict[str, Any]] = []
    slice_tables: list[pd.DataFrame] = []
    packed: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}
    gifs: dict[str, Path] = {}
    members: dict[str, list[float]] = {}
    timing = {"read": 0.0, "inference": 0.0, "metrics": 0.0, "figures": 0.0}
    with ThreadPoolExecutor(_READ_WORKERS) as pool:
        for pid in tqdm(plan.patients, desc="evaluate", unit="patient", disable=not progress):
            rows = rows_by_patient[pid]
            t0 = time.perf_counter()
            images, truth = read_patient(rows, pool)
            t1 = time.perf_counter()
            proba, probas = seg.probabilities(images)
            pred = postprocess_volume(proba, seg.postprocess)
            if seg.members:
                members[pid] = member_dice(probas, truth, seg.postprocess)
            # an ensemble's members measure the disagreement, a single model's flipped input does; every
            # signal is recorded (not only the calibration's), so that calibrations can be fitted on them
            members_or_none = probas if len(probas) > 1 else None
            quality = quality_for_case(seg, images, proba, pred, member_probas=members_or_none, all_signals=True)
            t2 = time.perf_counter()
            per_slice = slice_metrics(pred, truth)
            per_slice["slice"] = rows["slice"].to_numpy()
            per_slice.insert(0, "patient_id", pid)
            records.append({**_patient_record(rows, pred, truth, per_slice), **quality})
            slice_tables.append(per_slice)
            t3 = time.perf_counter()
            if gif_dir is not None:
                gifs[pid] = save_gif(gif_dir / f"{pid}.gif", images, truth, pred)
                # Bits are 8x smaller than bools; only the figure patients are unpacked again.
                packed[pid] = (np.packbits(pred), pred.shape)
            timing["read"] += t1 - t0
            timing["inference"] += t2 - t1
            timing["metrics"] += t3 - t2
            timing["figures"] += time.perf_counter() - t3
    per_slice_all = pd.concat(slice_tables, ignore_index=True)
    return _Scores(pd.DataFrame(records), per_slice_all, packed, gifs, timing, members)


def _summarise(seg: Segmenter, ckpt_path: Path, plan: EvaluationPlan, scores: _Scores, n_boot: int) -> dict[str, Any]:
    """The contents of ``summary.json`` (before NaN -> null)."""
    per_patient, meta = scores.per_patient, seg.meta
    t0 = time.perf_counter()
    volume = summarise_table(per_patient, n_boot=n_boot)
    slices = summarise_table(scores.per_slice, n_boot=n_boot)
    scores.timing["metrics"] += time.perf_counter() - t0
    sid, ckpt_sid = plan.split_id, plan.checkpoint_split_id
    resolution = sorted({f"{h}x{w}" for h, w in zip(per_patient["height"], per_patient["width"])})
    return {
        "format": EVAL_FORMAT,
        "package_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {
            "path": str(ckpt_path),
            "model": meta.get("model"),
            "epoch": meta.get("epoch"),
            "metrics": meta.get("metrics"),
            "split_id": ckpt_sid,
            "backend": seg.backend,
        },
        "preprocess": meta.get("preprocess"),
        "postprocess": seg.postprocess.to_dict(),
        "data": {"index": plan.index_source, "resolution": resolution, "metrics_at": "the data's own resolution"},
        "split": {
            "name": plan.split,
            "fold": plan.fold,
            "splits_file": str(plan.splits_file) if plan.splits_file is not None else None,
            "split_id": sid,
            "checkpoint_split_id": ckpt_sid,
            "matches_checkpoint": split_matches(sid, ckpt_sid),
            "patients": plan.patients,
        },
        "warnings": plan.warnings,
        "n_patients": len(plan.patients),
        "n_slices": len(scores.per_slice),
        "seconds": {k: round(v, 2) for k, v in scores.timing.items()},
        "volume": volume,
        "slice": slices,
        "global_dice": dice_from_counts(
            per_patient["tp"].sum(), per_patient["pred_pixels"].sum(), per_patient["truth_pixels"].sum()
        ),
        "empty_cases": empty_cases(volume, slices),
        "ranked_patients": ranked_patients(per_patient),
        "chosen_patients": plan.chosen,
        "patients": per_patient.to_dict("records"),
    }


def _write_outputs(
    out_dir: Path,
    summary: dict[str, Any],
    scores: _Scores,
    plan: EvaluationPlan,
    figure_list: list[tuple[str, Path]],
) -> None:
    from gliomaseg.evaluation.html import write_report

    _write_csv(scores.per_patient, out_dir / "per_patient.csv")
    _write_csv(scores.per_slice, out_dir / "per_slice.csv")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    ranked = summary["ranked_patients"]
    order = plan.chosen + [ranked[k] for k in ("best", "median", "worst") if k in ranked]
    order += [pid for pid in plan.patients if pid not in order]
    dice_of = dict(zip(scores.per_patient["patient_id"], scores.per_patient["dice"]))
    gifs = scores.gifs
    gif_list = [(f"{pid} (Dice {dice_text(dice_of[pid])})", gifs[pid]) for pid in dict.fromkeys(order) if pid in gifs]
    write_report(out_dir / "report.html", summary, scores.per_patient, figures=figure_list, gifs=gif_list)
