"""One scan on the page: cached probabilities, and the mask, areas, quality and metrics for the current settings.

The network runs once per scan (twice if the user switches flip TTA on, which changes the
probabilities); the threshold and the other post-processing switches only re-run
:func:`~gliomaseg.evaluation.postprocess.postprocess_volume` on the cached probabilities. That is
the same computation :meth:`~gliomaseg.inference.segmenter.Segmenter.predict_volume` does for
``predict``, so the page and the CLI give identical masks for the same file and settings.

The quality flag (:mod:`gliomaseg.inference.quality`) likewise: the signals of the input and the
probabilities (with the flipped input's pass when the calibration uses the flip disagreement) are
cached with the probabilities; a settings change recomputes only the cheap signals of the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.evaluation.metrics import binary_metrics, dice_from_counts
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume
from gliomaseg.inference.inputs import WINDOWED_KINDS
from gliomaseg.inference.outputs import case_row, to_source
from gliomaseg.inference.quality import (
    calibration_signals,
    probability_signals,
    quality_calibration,
    score_case,
    unscored_reason,
)
from gliomaseg.inference.segmenter import Segmenter
from gliomaseg.web.uploads import Scan

__all__ = ["Analysis", "Result"]


@dataclass
class Result:
    """The outcome of one set of post-processing settings.

    Attributes:
        settings: the post-processing applied.
        probs: ``S x H x W`` float32 probabilities (with or without TTA, as ``settings.tta`` says).
        mask: ``S x H x W`` bool predicted mask.
        row: the ``cases.csv`` numbers ``predict`` writes for this mask (tumour voxels, mL,
            components; :func:`~gliomaseg.inference.outputs.case_row`), file columns empty.
        metrics: :func:`~gliomaseg.evaluation.metrics.binary_metrics` of the volume against the ground
            truth, or None without one.
        per_slice: one row per slice: ``slice``, ``tumour_px``, (known voxel size) ``tumour_mm2``, (with truth)
            ``truth_px`` and ``dice`` (NaN where the truth is empty).
        quality: ``quality_score`` and ``quality_flag`` as ``predict`` writes them, and
            ``quality_note``: why the case is not scored ('' when it is).
    """

    settings: PostprocessConfig
    probs: np.ndarray
    mask: np.ndarray
    row: dict[str, Any]
    metrics: dict[str, Any] | None
    per_slice: pd.DataFrame
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def best_slice(self) -> int:
        """The slice with the most predicted tumour (the first slice when none has any)."""
        return int(np.argmax(self.per_slice["tumour_px"].to_numpy()))


@dataclass
class Analysis:
    """A scan, its optional ground truth, and the probabilities computed so far (per TTA setting).

    Args:
        scan: the uploaded scan.
        truth: ``S x H x W`` bool ground truth, or None (defaults to the one found in the upload).

    Attributes:
        released: True once :meth:`release` dropped the arrays (the page then asks for the scan again).
    """

    scan: Scan
    truth: np.ndarray | None = None
    result: Result | None = None
    _probs: dict[bool, np.ndarray] = field(default_factory=dict, repr=False)
    _signals: dict[bool, dict[str, float]] = field(default_factory=dict, repr=False)
    released: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.truth is None:
            self.truth = self.scan.truth

    @property
    def nbytes(self) -> int:
        """Bytes held by this scan's arrays (volume, truth, probabilities, mask), each array counted once."""
        arrays = [self.scan.case.volume, self.scan.truth, self.truth, *self._probs.values()]
        if self.result is not None:
            arrays += [self.result.probs, self.result.mask]
        unique = {id(a): a for a in arrays if isinstance(a, np.ndarray)}
        return sum(_held_bytes(a) for a in unique.values())

    def release(self) -> None:
        """Drop every array (the session ended, or the server needed the memory); the object stays
        only as a marker (:attr:`released`) for the page to say so."""
        self.released = True
        self.result, self.truth, self.scan.truth = None, None, None
        self._probs.clear()
        self._signals.clear()
        self.scan.case.volume, self.scan.case.nifti = None, None

    def probabilities(self, segmenter: Segmenter, tta: bool) -> np.ndarray:
        """``S x H x W`` probabilities, computed by the network on first use and cached, with the
        quality signals that depend on them alone. NIfTI and DICOM scans go through the field-of-view
        window, as in ``predict``."""
        if tta not in self._probs:
            seg = segmenter.with_postprocess(tta=tta)
            seg = seg.with_field_of_view() if self.scan.case.kind in WINDOWED_KINDS else seg
            probs, probas = seg.probabilities(self.scan.volume)  # an ensemble's members give the disagreement
            calibration = quality_calibration(seg.meta)
            if not unscored_reason(self.scan.volume, calibration):
                members = probas if len(probas) > 1 else None
                signals = calibration_signals(calibration)
                self._signals[tta] = probability_signals(
                    seg, self.scan.volume, probs, member_probas=members, signals=signals
                )
            self._probs[tta] = probs
        return self._probs[tta]

    def _quality(self, segmenter: Segmenter, tta: bool, mask: np.ndarray) -> dict[str, Any]:
        """The case's quality for this mask: the cached signals plus those of the mask, scored."""
        calibration = quality_calibration(segmenter.meta)
        reason = unscored_reason(self.scan.volume, calibration)
        if reason:
            return {"quality_score": math.nan, "quality_flag": "", "quality_note": reason}
        scored = score_case(self._signals[tta], mask, calibration)
        return {"quality_score": scored["quality_score"], "quality_flag": scored["quality_flag"], "quality_note": ""}

    def update(self, segmenter: Segmenter, settings: PostprocessConfig) -> Result:
        """Mask, areas and metrics for ``settings`` (stored as :attr:`result`).

        Args:
            segmenter: the model (used only when the probabilities for ``settings.tta`` are not cached).
            settings: threshold and post-processing.

        Returns:
            The :class:`Result`.
        """
        probs = self.probabilities(segmenter, settings.tta)
        mask = postprocess_volume(probs, settings)
        metrics = binary_metrics(mask, self.truth) if self.truth is not None else None
        case = self.scan.case
        row, _ = case_row(case, to_source(case, mask), self.scan.geometry.voxel_ml)
        quality = self._quality(segmenter, settings.tta, mask)
        self.result = Result(settings, probs, mask, row, metrics, self._per_slice(mask), quality)
        return self.result

    def _per_slice(self, mask: np.ndarray) -> pd.DataFrame:
        pixels = mask.reshape(mask.shape[0], -1).sum(axis=1)
        table = pd.DataFrame({"slice": self.scan.slice_labels, "tumour_px": pixels.astype(np.int64)})
        geometry, frame = self.scan.geometry, self.scan.case.frame
        if geometry.spacing_known:
            # In-plane pixel area of the slices the model saw: the model frame's for NIfTI/DICOM (turned or
            # resliced), else the input's own (its slices are the third axis; see outputs.to_source).
            rows, cols = frame.spacing[:2] if frame is not None else geometry.spacing[:2]
            table["tumour_mm2"] = pixels * rows * cols
        if self.truth is not None:
            truth_px = self.truth.reshape(self.truth.shape[0], -1).sum(axis=1)
            both = (mask & self.truth).reshape(mask.shape[0], -1).sum(axis=1)
            table["truth_px"] = truth_px.astype(np.int64)
            table["dice"] = dice_from_counts(both, pixels, truth_px)
        return table


def _held_bytes(array: np.ndarray) -> int:
    """Memory ``array`` really holds: a FLAIR-only scan is one channel broadcast to three (stride 0)."""
    shared = np.prod([n for n, step in zip(array.shape, array.strides) if step != 0], dtype=np.int64)
    return int(shared) * array.itemsize
