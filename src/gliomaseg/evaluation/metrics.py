"""Binary segmentation metrics per slice and per patient volume (summaries: :mod:`~gliomaseg.evaluation.aggregate`).

Ratios come from MONAI's ``monai.metrics.compute_confusion_matrix_metric`` (on exact int64
counts in the layout of ``get_confusion_matrix``) and the 95th-percentile Hausdorff distance from
``monai.metrics.compute_hausdorff_distance(percentile=95)``. Counts and ratios are vectorised over
a batch of cases (slices); HD95 loops over the tumour cases on a crop around both masks, so
~3000 slices of 256 x 256 take a few seconds.

Empty-case convention
---------------------
An empty ground truth is common in kaggle_3m (about two thirds of the slices show no tumour), so
the metrics never report a silent NaN and never a silent 1.0. Every case (slice or volume) gets a
``case`` label:

* ``"tumour"``: the ground truth is non-empty. All metrics are defined, with one exception below.
  If the prediction is empty (a missed tumour), dice = iou = sensitivity = 0 and precision is
  *defined as 0* (it is 0/0; calling it 0 keeps missed tumours in the precision mean instead of
  silently dropping the worst cases). ``hd95`` is NaN there (a distance to an empty set does not
  exist) and :func:`~gliomaseg.evaluation.aggregate.summarise_table` reports how many such cases there are
  (``n_tumour_empty_prediction``), so the HD95 mean is over tumour cases with a prediction.
* ``"true_negative"``: ground truth and prediction are both empty.
* ``"false_positive"``: the ground truth is empty but the prediction is not.

For the two non-tumour cases the overlap metrics (dice, iou, precision, sensitivity, hd95) are
undefined and set to NaN; :func:`~gliomaseg.evaluation.aggregate.summarise_table` excludes those
rows from the overlap aggregates and counts them separately instead. ``accuracy`` (pixel accuracy)
and ``specificity`` are defined for every case (specificity would only be undefined if the truth
filled the whole image, which does not happen in kaggle_3m; it is then NaN).

``hd95`` is in pixels (unit spacing) unless :func:`binary_metrics` is given the voxel size
(``spacing``, as ``gliomaseg score`` does for NIfTI and DICOM SEG masks). For a kaggle_3m volume
it is computed in 3D with unit spacing on the ``S x H x W`` grid: kaggle_3m ships TIFF slices
without slice thickness or in-plane spacing, so millimetres are unavailable and the through-plane
distance counts one slice as one pixel.
Following MONAI, HD95 is the larger of the two directed 95th percentiles of the distances between
the mask edges (a mask pixel whose 4-/6-neighbourhood is not all foreground).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_confusion_matrix_metric, compute_hausdorff_distance

from gliomaseg.errors import GliomasegError

__all__ = [
    "CASES",
    "METRIC_KEYS",
    "OVERLAP_METRICS",
    "SUMMARY_COLUMNS",
    "binary_metrics",
    "case_from_counts",
    "dice_from_counts",
    "slice_metrics",
]

logger = logging.getLogger(__name__)

CASES: tuple[str, str, str] = ("tumour", "true_negative", "false_positive")
OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "sensitivity", "hd95")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "dice",
    "iou",
    "precision",
    "sensitivity",
    "specificity",
    "accuracy",
    "hd95",
)
METRIC_KEYS: tuple[str, ...] = (
    "case",
    "dice",
    "iou",
    "accuracy",
    "precision",
    "sensitivity",
    "specificity",
    "hd95",
    "tp",
    "fp",
    "fn",
    "tn",
    "truth_pixels",
    "pred_pixels",
)
_COUNT_KEYS = ("tp", "fp", "fn", "tn", "truth_pixels", "pred_pixels")
# MONAI metric names for the ratios taken from the confusion matrix.
_MONAI_NAMES = {
    "dice": "f1 score",
    "iou": "threat score",
    "accuracy": "accuracy",
    "precision": "precision",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


def _as_binary_array(x: Any, name: str) -> np.ndarray:
    """Convert a numpy array or torch tensor holding only 0/1 (or bool) values to a bool array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")
    if x.dtype == np.bool_:
        return x
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"{name} has dtype {x.dtype}; expected a bool or 0/1 numeric mask.")
    bad = (x != 0) & (x != 1)
    if bad.any():
        example = x[bad].flat[0].item()
        raise GliomasegError(
            f"{name} is not binary: it contains {example!r} besides 0/1. Binarise it first "
            "(e.g. mask > 0 for 0/255 masks, or gliomaseg.evaluation.postprocess.binarise for probabilities)."
        )
    return x != 0


def _check_pair(pred: Any, target: Any, ndims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    p = _as_binary_array(pred, "pred")
    t = _as_binary_array(target, "target")
    if p.shape != t.shape:
        raise GliomasegError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}.")
    if p.ndim not in ndims:
        want = " or ".join(f"{d}D" for d in ndims)
        raise GliomasegError(f"expected a {want} mask, got shape {tuple(p.shape)}.")
    if p.size == 0:
        raise GliomasegError(f"pred and target are empty arrays (shape {tuple(p.shape)}).")
    return p, t


def case_from_counts(truth_pixels: Any, pred_pixels: Any) -> np.ndarray | str:
    """Label cases by the empty-case convention of this module.

    Args:
        truth_pixels: number of foreground pixels in the ground truth (scalar or array).
        pred_pixels: number of foreground pixels in the prediction (same shape).

    Returns:
        ``"tumour"``, ``"true_negative"`` or ``"false_positive"`` (a str for scalar input, else an
        object array of the same shape).
    """
    t = np.asarray(truth_pixels)
    p = np.asarray(pred_pixels)
    out = np.where(t > 0, CASES[0], np.where(p > 0, CASES[2], CASES[1])).astype(object)
    return str(out) if out.ndim == 0 else out


def dice_from_counts(intersection: Any, pred_sum: Any, truth_sum: Any) -> float | np.ndarray:
    """Dice ``2 I / (P + T)`` from accumulated counts (e.g. per patient over its slices).

    Follows the module's empty-case convention: NaN when the truth is empty (``"true_negative"``
    or ``"false_positive"``, see :func:`case_from_counts`), 0 when the truth is non-empty and the
    prediction empty. Average with ``np.nanmean`` and report the non-tumour cases separately.

    Args:
        intersection: ``sum(pred * truth)``; scalar or array (CPU torch tensors are accepted).
        pred_sum: ``sum(pred)``; same shape. Soft (probability) sums are accepted too.
        truth_sum: ``sum(truth)``; same shape.

    Returns:
        Dice as a float for scalar input, else a float64 array.

    Raises:
        GliomasegError: negative counts or an intersection larger than either sum.
    """
    i, p, t = (np.asarray(v, dtype=np.float64) for v in (intersection, pred_sum, truth_sum))
    if (i < 0).any() or (p < 0).any() or (t < 0).any():
        raise GliomasegError(f"counts must be >= 0, got intersection={i}, pred_sum={p}, truth_sum={t}.")
    # A small tolerance allows float-accumulated soft counts.
    if (i > np.minimum(p, t) * (1 + 1e-6) + 1e-6).any():
        raise GliomasegError(f"intersection {i} exceeds pred_sum {p} or truth_sum {t}; check the accumulated counts.")
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(t > 0, 2.0 * i / (p + t), np.nan)
    return float(dice) if dice.ndim == 0 else dice


def _hd95_batch(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """HD95 for ``N x spatial`` bool masks where both masks of each case are non-empty (``spacing``: per
    spatial axis, None for unit spacing)."""
    n = pred.shape[0]
    hd = np.empty(n, dtype=np.float64)
    if n == 0:
        return hd
    union = pred | target
    spatial = tuple(range(1, union.ndim))
    # Bounding box of the union per case, one spatial axis at a time (vectorised over cases).
    bounds = []
    for ax in spatial:
        hit = union.any(axis=tuple(a for a in spatial if a != ax))  # N x size_ax
        first = hit.argmax(axis=1)
        last = hit.shape[1] - 1 - hit[:, ::-1].argmax(axis=1)
        bounds.append((np.maximum(first - 1, 0), np.minimum(last + 2, hit.shape[1])))
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 passes its own deprecated argument internally; nothing for callers to fix.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        for i in range(n):
            # Cropping to the union box (+1 pixel) first leaves the distances unchanged (MONAI pads with
            # background when it crops) but makes MONAI's per-case edge extraction ~10x cheaper.
            box = (i, *(slice(int(lo[i]), int(hi[i])) for lo, hi in bounds))
            d = compute_hausdorff_distance(
                pred[box][None, None],
                target[box][None, None],
                include_background=True,
                percentile=95,
                distance_metric="euclidean",
                spacing=None if spacing is None else [float(s) for s in spacing],
            )
            hd[i] = float(d[0, 0])
    return hd


def _metrics_batch(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """Metrics for ``N x spatial`` bool masks (one case per leading index), as arrays of length N."""
    n = pred.shape[0]
    flat_p = pred.reshape(n, -1)
    flat_t = target.reshape(n, -1)
    # Exact int64 counts in MONAI's confusion-matrix layout. numpy's count_nonzero is ~15x faster
    # than monai.metrics.get_confusion_matrix here (which needs a uint8 copy and float sums) and
    # exact for any volume size; the ratios below are MONAI's.
    tp = np.count_nonzero(flat_p & flat_t, axis=1).astype(np.int64)
    pred_pixels = np.count_nonzero(flat_p, axis=1).astype(np.int64)
    truth_pixels = np.count_nonzero(flat_t, axis=1).astype(np.int64)
    fp = pred_pixels - tp
    fn = truth_pixels - tp
    tn = flat_p.shape[1] - tp - fp - fn
    cm = torch.from_numpy(np.stack([tp, fp, tn, fn], axis=1).astype(np.float64))  # N x 4
    out: dict[str, np.ndarray] = {
        key: compute_confusion_matrix_metric(name, cm).numpy() for key, name in _MONAI_NAMES.items()
    }
    out.update(tp=tp, fp=fp, fn=fn, tn=tn, truth_pixels=truth_pixels, pred_pixels=pred_pixels)

    tumour = out["truth_pixels"] > 0
    missed = tumour & (out["pred_pixels"] == 0)
    for key in OVERLAP_METRICS[:-1]:
        out[key] = np.where(tumour, out[key], np.nan)
    # Convention: a missed tumour has precision 0, not NaN (see module docstring).
    out["precision"] = np.where(missed, 0.0, out["precision"])

    hd = np.full(n, np.nan)
    both = np.flatnonzero(tumour & ~missed)
    hd[both] = _hd95_batch(pred[both], target[both], spacing)
    out["hd95"] = hd
    out["case"] = case_from_counts(out["truth_pixels"], out["pred_pixels"])
    return out


def binary_metrics(pred: Any, target: Any, *, spacing: Sequence[float] | None = None) -> dict[str, float | int | str]:
    """Binary segmentation metrics for one case: a slice or a whole patient volume.

    Args:
        pred: predicted mask, ``H x W`` (slice) or ``S x H x W`` (volume); numpy array or torch
            tensor with bool or 0/1 values.
        target: ground-truth mask of the same shape and kind.
        spacing: voxel size along each axis of the masks (e.g. mm from a NIfTI header), so that
            ``hd95`` is in those units; None (the default) for unit spacing, ``hd95`` in pixels.

    Returns:
        A dict with ``case`` (str, see the module docstring), the float metrics ``dice``, ``iou``,
        ``accuracy``, ``precision``, ``sensitivity``, ``specificity`` and ``hd95`` (pixels, or the
        unit of ``spacing``; 3D for volumes), and the int counts ``tp``, ``fp``, ``fn``, ``tn``,
        ``truth_pixels``, ``pred_pixels``.

    Raises:
        TypeError: inputs that are not numpy arrays / torch tensors.
        GliomasegError: non-binary values, mismatched shapes, not 2D/3D, or a ``spacing`` that does
            not give one positive size per axis.
    """
    p, t = _check_pair(pred, target, (2, 3))
    if spacing is not None and (len(spacing) != p.ndim or not all(float(s) > 0 for s in spacing)):
        raise GliomasegError(f"spacing {tuple(spacing)} must give one positive size per axis of the {p.ndim}D masks.")
    batch = _metrics_batch(p[None], t[None], spacing)
    result: dict[str, float | int | str] = {}
    for key in METRIC_KEYS:
        value = batch[key][0]
        if key == "case":
            result[key] = str(value)
        elif key in _COUNT_KEYS:
            result[key] = int(value)
        else:
            result[key] = float(value)
    return result


def slice_metrics(pred: Any, target: Any) -> pd.DataFrame:
    """Per-slice metrics of a stack of slices, vectorised over slices.

    Args:
        pred: predicted masks ``S x H x W`` (bool or 0/1, numpy or torch).
        target: ground-truth masks ``S x H x W``.

    Returns:
        DataFrame with one row per slice: ``slice`` (index along S) and the keys of
        :func:`binary_metrics` (``hd95`` is 2D, per slice).

    Raises:
        TypeError: inputs that are not numpy arrays / torch tensors.
        GliomasegError: non-binary values, mismatched shapes, or not 3D.
    """
    p, t = _check_pair(pred, target, (3,))
    batch = _metrics_batch(p, t)
    df = pd.DataFrame({"slice": np.arange(p.shape[0]), **{k: batch[k] for k in METRIC_KEYS}})
    df["case"] = df["case"].astype(str)
    return df
