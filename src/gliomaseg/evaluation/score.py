"""``gliomaseg score PRED TRUTH``: score predicted masks against reference masks (nnU-Net's ``evaluate_folder``).

PRED and TRUTH are mask files or folders of them: NIfTI, DICOM SEG or kaggle_3m slice masks, in any
mix, matched by case name (the rules are in :mod:`gliomaseg.evaluation.mask_files`). Cases found on
one side only are listed (a warning; an error when no case matches).

Each pair is scored with the metrics code of ``evaluate`` (:func:`~gliomaseg.evaluation.metrics.binary_metrics`,
its empty-case convention and :func:`~gliomaseg.evaluation.aggregate.summarise_table`): Dice, IoU,
precision, sensitivity, specificity, accuracy and HD95, plus the volumes of prediction and truth
and their difference. With a voxel size from a header (NIfTI, DICOM SEG) HD95 is in mm and volumes
in mL; without one (kaggle_3m slices on both sides) they are in voxels, and the tables say so
(``hd95_unit``, ``volume_unit``).

Outputs in ``out`` (written atomically; existing ones only replaced with ``overwrite``):

- ``per_case.csv``: one row per matched case: ``name`` (the case), ``case`` (``tumour``,
  ``true_negative`` or ``false_positive``: an empty truth is labelled, never a silent NaN or 1.0),
  the metrics, ``hd95_unit``, ``pred_volume``, ``truth_volume``, ``volume_diff`` (pred - truth),
  ``abs_volume_diff``, ``volume_unit``, the voxel counts, ``spacing``, ``spacing_from`` and the two files.
- ``summary.json``: ``mean`` (nnU-Net style: each metric's mean; overlap metrics over tumour cases),
  ``summary`` (mean, median, std, worst, 10th percentile and bootstrap 95% CI per metric, empty-case
  counts), ``unmatched_pred``/``unmatched_truth``, ``metric_per_case``. NaN is written as ``null``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.evaluation.aggregate import summarise_table
from gliomaseg.evaluation.mask_files import align_pair, find_masks, match_cases, read_mask_file
from gliomaseg.evaluation.metrics import METRIC_KEYS, SUMMARY_COLUMNS, binary_metrics
from gliomaseg.utils import atomic_write_text, json_safe

__all__ = ["OUTPUTS", "PER_CASE_COLUMNS", "SCORE_FORMAT", "ScoreResult", "score_masks", "score_pair"]

log = logging.getLogger(__name__)

SCORE_FORMAT = "gliomaseg-score/1"
OUTPUTS: tuple[str, str] = ("summary.json", "per_case.csv")
VOLUME_COLUMNS: tuple[str, ...] = ("pred_volume", "truth_volume", "volume_diff", "abs_volume_diff")
PER_CASE_COLUMNS: tuple[str, ...] = (
    "name",
    *METRIC_KEYS[:8],
    "hd95_unit",
    *VOLUME_COLUMNS,
    "volume_unit",
    *METRIC_KEYS[8:],
    "spacing",
    "spacing_from",
    "pred",
    "truth",
)


@dataclass
class ScoreResult:
    """What :func:`score_masks` computed and wrote: ``per_case`` (the ``per_case.csv`` table), ``summary``
    (``summary.json``), ``files`` (the files written) and the unmatched case names."""

    per_case: pd.DataFrame
    summary: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_truth: list[str] = field(default_factory=list)


def score_pair(name: str, pred: Any, truth: Any) -> dict[str, Any]:
    """Score one matched pair.

    Args:
        name: the case name.
        pred: its predicted :class:`~gliomaseg.evaluation.mask_files.MaskFile`.
        truth: its reference :class:`~gliomaseg.evaluation.mask_files.MaskFile`.

    Returns:
        One ``per_case.csv`` row (keys :data:`PER_CASE_COLUMNS`).

    Raises:
        GliomasegError: an unreadable mask, or two masks not on one voxel grid (naming both files).
    """
    p, t, affine, spacing_from = align_pair(name, read_mask_file(pred), read_mask_file(truth))
    spacing = None if affine is None else tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    metrics = binary_metrics(p, t, spacing=spacing)
    # The true voxel volume, also for a sheared grid; mm^3 -> mL.
    voxel = 1.0 if affine is None else abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    pred_volume, truth_volume = metrics["pred_pixels"] * voxel, metrics["truth_pixels"] * voxel
    return {
        "name": name,
        **metrics,
        "hd95_unit": "voxels" if spacing is None else "mm",
        "pred_volume": pred_volume,
        "truth_volume": truth_volume,
        "volume_diff": pred_volume - truth_volume,
        "abs_volume_diff": abs(pred_volume - truth_volume),
        "volume_unit": "voxels" if spacing is None else "mL",
        "spacing": "" if spacing is None else " x ".join(f"{s:.4g}" for s in spacing),
        "spacing_from": spacing_from,
        "pred": str(pred.source),
        "truth": str(truth.source),
    }


def _summary_table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """The table to summarise (one unit per column) and the units; cases in voxels are left out when
    others are in mm, and counted as missing."""
    in_mm = df["hd95_unit"] == "mm"
    units = {"hd95": "mm" if in_mm.any() else "voxels", "volume": "mL" if in_mm.any() else "voxels"}
    warnings = []
    if in_mm.any() and not in_mm.all():
        df = df.copy()
        df.loc[~in_mm, ["hd95", *VOLUME_COLUMNS]] = np.nan
        names = ", ".join(df.loc[~in_mm, "name"].astype(str).head(5))
        warnings.append(
            f"{int((~in_mm).sum())} case(s) without a voxel size ({names}) are left out of the HD95 and volume "
            "summaries, which are in mm and mL"
        )
    return df, units, warnings


def _summary(df: pd.DataFrame, pred: Path, truth: Path, unmatched: tuple[list[str], list[str]], n_boot: int) -> dict:
    table, units, warnings = _summary_table(df)
    columns = (*SUMMARY_COLUMNS, *VOLUME_COLUMNS)
    summary = summarise_table(table, columns=columns, n_boot=n_boot)
    for warning in warnings:
        log.warning("%s", warning)
    if unmatched[0] or unmatched[1]:
        warnings.append(f"unmatched cases: {len(unmatched[0])} prediction(s), {len(unmatched[1])} reference(s)")
    return {
        "format": SCORE_FORMAT,
        "pred": str(pred),
        "truth": str(truth),
        "n_cases": len(df),
        "units": units,
        "mean": {col: summary["metrics"][col]["mean"] for col in columns},
        "summary": summary,
        "unmatched_pred": unmatched[0],
        "unmatched_truth": unmatched[1],
        "warnings": warnings,
        "metric_per_case": df.to_dict("records"),
    }


def _check_outputs(out: Path, overwrite: bool) -> list[Path]:
    targets = [out / name for name in OUTPUTS]
    if out.exists() and not out.is_dir():
        raise GliomasegError(f"output {out} exists and is not a folder; choose another --out")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace, or choose another --out")
    return targets


def score_masks(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = "score",
    *,
    overwrite: bool = False,
    n_boot: int = 2000,
) -> ScoreResult:
    """Score predicted masks against reference masks, matched by case name.

    Args:
        pred: a predicted mask file or a folder of them (NIfTI, DICOM SEG, ``*_mask.tif`` slices).
        truth: the reference masks, the same way (any kind; they need not match PRED's kind).
        out: folder for ``summary.json`` and ``per_case.csv``; None writes nothing.
        overwrite: replace those two files where they exist.
        n_boot: bootstrap resamples for the confidence intervals.

    Returns:
        A :class:`ScoreResult`.

    Raises:
        GliomasegError: missing paths, no case in common (both sides' names shown), unreadable or
            non-mask files, a pair not on one grid, or outputs that exist without ``overwrite``.

    Example:
        >>> result = score_masks("pred", "kaggle_3m", "score")  # doctest: +SKIP
        >>> result.summary["mean"]["dice"]  # doctest: +SKIP
    """
    pred, truth = Path(pred), Path(truth)
    targets = _check_outputs(Path(out), overwrite) if out is not None else []
    pairs, only_pred, only_truth = match_cases(find_masks(pred), find_masks(truth))
    if not pairs:
        raise GliomasegError(
            f"no case of {pred} matches one of {truth}: predictions {_names(only_pred)}, references "
            f"{_names(only_truth)}; cases are matched by file name without extension and _mask/_seg (see "
            "gliomaseg score --help)"
        )
    if only_pred:
        log.warning("%d prediction(s) without a reference, not scored: %s", len(only_pred), _names(only_pred, 20))
    if only_truth:
        log.warning("%d reference(s) without a prediction, not scored: %s", len(only_truth), _names(only_truth, 20))
    rows = [score_pair(name, p, t) for name, p, t in pairs]
    per_case = pd.DataFrame(rows, columns=list(PER_CASE_COLUMNS))
    summary = _summary(per_case, pred, truth, (only_pred, only_truth), n_boot)
    if targets:
        atomic_write_text(targets[1], per_case.to_csv(index=False))
        atomic_write_text(targets[0], json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    return ScoreResult(per_case, summary, targets, only_pred, only_truth)


def _names(names: list[str], limit: int = 5) -> str:
    if not names:
        return "(none)"
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
