"""Per-case quality flags: how far a predicted mask should be trusted (issue 25).

Three kinds of signals, each computed from what prediction already has (the input volume, the
probabilities, the final mask) plus, for the first, one more forward pass:

- **disagreement**: soft Dice between the probabilities and those of the left-right flipped input
  (flipped back); for an ensemble, the mean soft Dice between its members' probabilities instead
  (no extra pass). A model that is sure of a mask predicts it the same way from a mirrored scan.
- **distance from the training data**: the input's intensity statistics (per channel: share of
  head voxels, head-voxel quantiles relative to the 99th percentile, background level, and the
  correlation of pre- and post-contrast with FLAIR) as absolute z-scores against those of the
  training volumes, stored with the calibration; their mean is ``input_distance``.
- **implausible masks**: many 3D components before post-processing, tumour touching the in-plane
  border, a tiny or huge predicted volume, and a large uncertain band (voxels with 0.2 < p < 0.8
  relative to the predicted voxels).

A logistic regression on these signals, fitted on evaluations of the model (out-of-fold and shifted
cases, ``scripts/calibrate_quality.py``), predicts the chance that the case's Dice is below 0.5;
``quality_score`` is one minus that chance (higher = more trustworthy) and ``quality_flag`` is
``check`` below the stored threshold, else ``ok``. The calibration is a small JSON file: the model
file's own (``meta["quality"]``) when it has one, else the one calibrated for the bundled
``lgg-unet`` (``weights/lgg-unet.quality.json``), or another asked for by name or as a JSON file
(:mod:`gliomaseg.inference.quality_calibrations`; ``flip`` adds the flip disagreement).
Only NumPy and SciPy are needed here.

**Only what the calibration uses is computed** (its ``features``): the flipped pass runs only for a
calibration using ``disagreement``; ``evaluate`` asks for every signal, to fit the next calibration.
The others cost milliseconds on a 155 x 256 x 256 volume (a fixed strided sample of the input; the
box where ``p > 0.2``). :func:`probability_signals` do not depend on the post-processing and can be
kept while it changes (the web page does); :func:`score_case` adds the mask's. A single slice is not
scored: the flag is calibrated on whole volumes, whose volume and components mean something else.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.errors import GliomasegError
from gliomaseg.inference.quality_calibrations import quality_calibration

__all__ = [
    "QUALITY_COLUMNS",
    "SIGNALS",
    "calibration_signals",
    "check_signals",
    "input_statistics",
    "probability_signals",
    "quality_for_case",
    "quality_signals",
    "score_case",
    "score_signals",
    "unscored_reason",
]

#: The signals a calibration may use, in a fixed order.
SIGNALS = (
    "disagreement",
    "input_distance",
    "log_components",
    "border_fraction",
    "log_volume",
    "uncertain_fraction",
)
#: Columns a per-case table gets (besides the raw signals).
QUALITY_COLUMNS = ("quality_score", "quality_flag")
#: Signals of the final mask (the others depend on the input and the probabilities only).
_MASK_SIGNALS = ("border_fraction", "log_volume", "uncertain_fraction")
_STAT_QUANTILES = (10, 50, 90)
_BORDER_PX = 2
#: Voxels at most in the strided sample of :func:`input_statistics`.
_SAMPLE_VOXELS = 131_072
#: Where the probability-based signals look: voxels above it (the uncertain band starts there).
_LOW, _HIGH = 0.2, 0.8
#: Private keys carried from :func:`probability_signals` to :func:`score_case` (not signals).
_UNCERTAIN = "_uncertain_voxels"


def check_signals(names: Collection[str], where: str = "quality signals") -> tuple[str, ...]:
    """``names`` in :data:`SIGNALS` order.

    Raises:
        GliomasegError: a name not in :data:`SIGNALS` (the message lists the valid ones).
    """
    unknown = sorted(set(names) - set(SIGNALS))
    if unknown:
        raise GliomasegError(f"{where}: unknown signal(s) {unknown}; the signals are {', '.join(SIGNALS)}")
    return tuple(s for s in SIGNALS if s in names)


def calibration_signals(calibration: dict[str, Any] | None) -> tuple[str, ...]:
    """The signals a calibration uses (its ``features``); none without a calibration.

    Raises:
        GliomasegError: the calibration names a signal this version does not know.
    """
    if calibration is None:
        return ()
    return check_signals(calibration.get("features", ()), "quality calibration")


def unscored_reason(volume: np.ndarray, calibration: dict[str, Any] | None) -> str:
    """Why the ``S x H x W x 3`` ``volume`` gets no quality score under ``calibration`` ('' when it gets one)."""
    if calibration is None:
        return "no quality calibration for this model"
    if np.asarray(volume).shape[0] < 2:
        return "one slice: the quality flag is calibrated on whole volumes"
    return ""


def _soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Soft Dice ``2 sum(ab) / (sum(a) + sum(b))`` of two probability volumes; 1.0 when both are (almost)
    empty. Below 1 even for a map with itself where it is unsure (0.9 everywhere gives 0.9): the
    signal measures fuzziness as well as disagreement, and both mean a mask to check."""
    total = float(a.sum(dtype=np.float64) + b.sum(dtype=np.float64))
    return 1.0 if total < 1.0 else float(2.0 * np.multiply(a, b).sum(dtype=np.float64) / total)


def _sample(volume: np.ndarray) -> np.ndarray:
    """Every slice's every k-th row and column of an ``S x H x W x C`` volume, the smallest k keeping at
    most :data:`_SAMPLE_VOXELS` voxels (``N x C`` float32): a view until the small copy, whatever the layout."""
    s, h, w = volume.shape[:3]
    k = max(1, math.ceil(math.sqrt(s * h * w / _SAMPLE_VOXELS)))
    return volume[:, ::k, ::k].reshape(-1, volume.shape[-1]).astype(np.float32)


def input_statistics(volume: np.ndarray) -> dict[str, float]:
    """Intensity statistics of an ``S x H x W x 3`` uint8 volume, comparable across volumes.

    Computed on a fixed strided sample of the voxels (at most 131,072), the same everywhere.

    Returns:
        Per channel ``c``: ``head_c`` (share of voxels above 5 % of the channel's 99th percentile),
        ``q10_c``/``q50_c``/``q90_c`` (quantiles of those voxels over the 99th percentile),
        ``background_c`` (mean of the others over the 99th percentile); ``corr_pre_flair`` and
        ``corr_post_flair`` (1.0 when a sequence is a FLAIR copy).
    """
    flat = _sample(np.asarray(volume))
    out: dict[str, float] = {}
    for c in range(flat.shape[1]):
        x = flat[:, c]
        top = max(float(np.percentile(x, 99)), 1.0)
        head = x > 0.05 * top
        out[f"head_{c}"] = float(head.mean())
        inside = x[head] if head.any() else x
        for q, value in zip(_STAT_QUANTILES, np.percentile(inside, _STAT_QUANTILES)):
            out[f"q{q}_{c}"] = float(value) / top
        out[f"background_{c}"] = float(x[~head].mean()) / top if (~head).any() else 0.0
    for name, c in (("corr_pre_flair", 0), ("corr_post_flair", 2)):
        a, b = flat[:, c], flat[:, 1]
        out[name] = 1.0 if a.std() < 1e-6 or b.std() < 1e-6 else float(np.corrcoef(a, b)[0, 1])
    return out


def _hot_box(proba: np.ndarray) -> np.ndarray:
    """The smallest box (a view) holding every voxel with ``p > 0.2``, so the components before
    post-processing and the uncertain band (inside it) cost little on a large volume."""
    peaks = proba.max(axis=(1, 2))
    slices = np.flatnonzero(peaks > _LOW)
    if slices.size == 0:
        return proba[:0]
    part = proba[slices[0] : slices[-1] + 1]
    hot = part > _LOW
    rows, cols = np.flatnonzero(hot.any(axis=(0, 2))), np.flatnonzero(hot.any(axis=(0, 1)))
    return part[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _probability_part(input_view: np.ndarray, proba: np.ndarray, signals: Collection[str]) -> dict[str, float]:
    """The signals of the input (``input_view``: the slices the network saw) and the probabilities, but the
    disagreement."""
    out: dict[str, float] = {}
    if "input_distance" in signals:
        out.update({f"in_{k}": v for k, v in input_statistics(input_view).items()})
    if "log_components" in signals or "uncertain_fraction" in signals:
        box = _hot_box(np.asarray(proba))
        if "log_components" in signals:
            raw = box > 0.5
            out["log_components"] = math.log1p(int(ndimage.label(raw)[1]) if raw.any() else 0)
        if "uncertain_fraction" in signals:
            out[_UNCERTAIN] = float(np.count_nonzero((box > _LOW) & (box < _HIGH)))
    return out


def _mask_part(base: dict[str, float], mask: np.ndarray, signals: Collection[str]) -> dict[str, float]:
    """The signals of the final mask (``base``: :func:`probability_signals`, for the uncertain band)."""
    wanted = [s for s in _MASK_SIGNALS if s in signals]
    if not wanted:
        return {}
    m = np.asarray(mask, dtype=bool)
    voxels = int(np.count_nonzero(m))
    b = _BORDER_PX
    # the border strips counted apart (no full-size temporary): top and bottom rows, then the columns between
    on_border = sum(np.count_nonzero(part) for part in (m[:, :b], m[:, -b:], m[:, b:-b, :b], m[:, b:-b, -b:]))
    values = {
        "border_fraction": on_border / max(voxels, 1),
        "log_volume": math.log10(1.0 + voxels),
        "uncertain_fraction": base.get(_UNCERTAIN, math.nan) / max(voxels, 1.0),
    }
    return {s: values[s] for s in wanted}


def _public(signals: dict[str, float]) -> dict[str, float]:
    """The signals without the internal ``_``-keys kept for :func:`score_case`."""
    return {k: v for k, v in signals.items() if k != _UNCERTAIN}


def quality_signals(
    volume: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    *,
    other_probas: Sequence[np.ndarray] = (),
    signals: Collection[str] = SIGNALS,
) -> dict[str, float]:
    """The raw signals of one case (before comparison with the training statistics).

    Args:
        volume: ``S x H x W x 3`` uint8 input; ``proba``: its ``S x H x W`` probabilities; ``mask``:
            the final ``S x H x W`` mask.
        other_probas: probabilities to compare ``proba`` with (e.g. the flipped input's): the
            disagreement is 1 - their mean soft Dice with ``proba`` (0 without any).
        signals: which of :data:`SIGNALS` to compute (default all).

    Returns:
        The signals asked for; with ``input_distance``, :func:`input_statistics` prefixed ``in_``.
    """
    out: dict[str, float] = {}
    if "disagreement" in signals:
        agreement = float(np.mean([_soft_dice(proba, o) for o in other_probas])) if len(other_probas) else 1.0
        out["disagreement"] = 1.0 - agreement
    out.update(_probability_part(volume, proba, signals))
    return _public({**out, **_mask_part(out, mask, signals)})


def _disagreement(segmenter: Any, volume: np.ndarray, proba: np.ndarray, member_probas: Any) -> float:
    """1 - soft Dice with the flipped input's probabilities; an ensemble's: 1 - its members' mean pairwise one."""
    if member_probas is not None and len(member_probas) > 1:
        # against the mean, each member disagrees less than with each other: use pairwise agreement
        pairs = [_soft_dice(a, b) for i, a in enumerate(member_probas) for b in member_probas[i + 1 :]]
        return 1.0 - float(np.mean(pairs))
    flipped = segmenter.predict_proba(np.ascontiguousarray(volume[:, :, ::-1]))[:, :, ::-1]
    return 1.0 - _soft_dice(proba, flipped)


def probability_signals(
    segmenter: Any,
    volume: np.ndarray,
    proba: np.ndarray,
    *,
    member_probas: Sequence[np.ndarray] | None = None,
    signals: Collection[str] = SIGNALS,
) -> dict[str, float]:
    """The signals that depend on the input and the probabilities only (not on the post-processing).

    Args:
        segmenter: the :class:`~gliomaseg.inference.Segmenter` that predicted the case; it runs the
            flipped forward pass when ``disagreement`` is asked for and ``member_probas`` holds
            fewer than two members.
        volume: ``S x H x W x 3`` uint8 input as given to the segmenter.
        proba: its ``S x H x W`` probabilities (an ensemble's mean).
        member_probas: each ensemble member's probabilities, if known.
        signals: which of :data:`SIGNALS` are wanted (the mask's are left to :func:`score_case`).

    Returns:
        Those asked for, plus ``_``-keys :func:`score_case` needs; valid while only the mask changes.
    """
    out = {"disagreement": _disagreement(segmenter, volume, proba, member_probas)} if "disagreement" in signals else {}
    # The input's statistics are those of what the network saw: with the field-of-view window, the head
    # framed as in training, whatever the scan's own framing (the calibration's statistics are kaggle_3m's).
    view = segmenter.network_view(volume) if hasattr(segmenter, "network_view") else volume
    return {**out, **_probability_part(view, proba, signals)}


def _input_distance(signals: dict[str, float], reference: dict[str, list[float]]) -> float:
    """Mean absolute z-score of the input statistics against the training volumes' (mean, std)."""
    z = [abs(signals[k] - m) / max(s, 1e-3) for k, (m, s) in reference.items() if k in signals]
    return float(np.mean(z)) if z else math.nan


def score_signals(signals: dict[str, float], calibration: dict[str, Any]) -> dict[str, Any]:
    """``quality_score``, ``quality_flag`` and ``input_distance`` of a case from its raw signals.

    Args:
        signals: from :func:`quality_signals` (at least the calibration's features).
        calibration: ``{"reference": {stat: [mean, std]}, "features": [...], "mean": [...],
            "scale": [...], "coef": [...], "intercept": float, "threshold": float}`` (logistic
            regression on standardised features predicting Dice < 0.5).

    Returns:
        ``{"input_distance", "quality_score", "quality_flag"}`` (``input_distance`` NaN without
        input statistics).
    """
    values = {**signals, "input_distance": _input_distance(signals, calibration.get("reference", {}))}
    x = np.array([values[f] for f in calibration["features"]], dtype=np.float64)
    z = (x - np.asarray(calibration["mean"])) / np.asarray(calibration["scale"])
    logit = float(np.dot(np.asarray(calibration["coef"]), z) + float(calibration["intercept"]))
    score = 1.0 - 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
    flag = "ok" if score >= float(calibration["threshold"]) else "check"
    return {"input_distance": values["input_distance"], "quality_score": score, "quality_flag": flag}


def score_case(base: dict[str, float], mask: np.ndarray, calibration: dict[str, Any]) -> dict[str, Any]:
    """The calibration's signals, ``input_distance``, ``quality_score`` and ``quality_flag`` of a case
    from its :func:`probability_signals` (``base``, for at least the calibration's signals) and its
    final ``S x H x W`` ``mask``."""
    wanted = calibration_signals(calibration)
    signals = _public({**base, **_mask_part(base, mask, wanted)})
    return {**signals, **score_signals(signals, calibration)}


def quality_for_case(
    segmenter: Any,
    volume: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    *,
    member_probas: Sequence[np.ndarray] | None = None,
    calibration: dict[str, Any] | str | Path | None = None,
    all_signals: bool = False,
) -> dict[str, Any]:
    """Quality signals, ``quality_score`` and ``quality_flag`` of one predicted case.

    Args:
        segmenter: the :class:`~gliomaseg.inference.Segmenter` that predicted the case (used for one
            flipped forward pass when ``disagreement`` is computed and ``member_probas`` holds fewer
            than two members).
        volume: ``S x H x W x 3`` uint8 input as given to the segmenter.
        proba: its ``S x H x W`` probabilities (an ensemble's mean).
        mask: the final ``S x H x W`` mask.
        member_probas: each ensemble member's probabilities (from ``member_probas``), if known.
        calibration: a calibration dict, bundled name or JSON file; default: the model file's, else
            the bundled one.
        all_signals: compute every signal of :data:`SIGNALS` (``evaluate``, which records them to
            fit calibrations), not only those the calibration uses.

    Returns:
        The signals computed (see :func:`quality_signals`) plus ``input_distance``,
        ``quality_score`` (0-1, higher = more trustworthy) and ``quality_flag`` (``ok`` or
        ``check``); the score is NaN and the flag empty for a case :func:`unscored_reason` names
        (no calibration, one slice).

    Raises:
        GliomasegError: an unreadable calibration file, or one naming unknown signals.

    Example:
        >>> row = quality_for_case(seg, volume, proba, mask)  # doctest: +SKIP
        >>> row["quality_flag"]  # doctest: +SKIP
        'ok'
    """
    chosen = quality_calibration(getattr(segmenter, "meta", None), calibration)
    wanted = calibration_signals(chosen)
    unscored = unscored_reason(volume, chosen)
    blank = {"input_distance": math.nan, "quality_score": math.nan, "quality_flag": ""}
    if unscored and not all_signals:
        return blank
    wanted = SIGNALS if all_signals else wanted
    base = probability_signals(segmenter, volume, proba, member_probas=member_probas, signals=wanted)
    signals = _public({**base, **_mask_part(base, mask, wanted)})
    if unscored:
        return {**signals, **blank}
    return {**signals, **score_signals(signals, chosen)}
