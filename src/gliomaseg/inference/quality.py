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
``lgg-unet`` (``weights/lgg-unet.quality.json``). Only NumPy and SciPy are needed here.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.errors import GliomasegError

__all__ = [
    "QUALITY_COLUMNS",
    "SIGNALS",
    "default_calibration",
    "input_statistics",
    "quality_for_case",
    "quality_signals",
    "score_signals",
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
_STAT_QUANTILES = (10, 50, 90)
_BORDER_PX = 2


def _soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Soft Dice ``2 sum(ab) / (sum(a) + sum(b))`` of two probability volumes; 1.0 when both are (almost)
    empty. Below 1 even for a map with itself where it is unsure (0.9 everywhere gives 0.9): the
    signal measures fuzziness as well as disagreement, and both mean a mask to check."""
    a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    total = float(a64.sum() + b64.sum())
    return 1.0 if total < 1.0 else float(2.0 * (a64 * b64).sum() / total)


def input_statistics(volume: np.ndarray) -> dict[str, float]:
    """Intensity statistics of an ``S x H x W x 3`` uint8 volume, comparable across volumes.

    Returns:
        Per channel ``c``: ``head_c`` (share of voxels above 5 % of the channel's 99th percentile),
        ``q10_c``/``q50_c``/``q90_c`` (quantiles of those voxels over the 99th percentile),
        ``background_c`` (mean of the others over the 99th percentile); ``corr_pre_flair`` and
        ``corr_post_flair`` (1.0 when a sequence is a FLAIR copy).
    """
    v = np.asarray(volume)
    out: dict[str, float] = {}
    step = max(1, v[..., 0].size // 400_000)  # a strided sample keeps this cheap on big volumes
    flat = v.reshape(-1, v.shape[-1])[::step].astype(np.float32)
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


def _mask_signals(proba: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    raw = proba > 0.5
    n_components = int(ndimage.label(raw)[1]) if raw.any() else 0
    m = np.asarray(mask, dtype=bool)
    border = np.zeros(m.shape[1:], bool)
    border[:_BORDER_PX], border[-_BORDER_PX:], border[:, :_BORDER_PX], border[:, -_BORDER_PX:] = True, True, True, True
    voxels = int(m.sum())
    uncertain = int(((proba > 0.2) & (proba < 0.8)).sum())
    return {
        "log_components": math.log1p(n_components),
        "border_fraction": float((m & border).sum()) / max(voxels, 1),
        "log_volume": math.log10(1.0 + voxels),
        "uncertain_fraction": uncertain / max(voxels, 1.0),
    }


def quality_signals(
    volume: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    *,
    other_probas: list[np.ndarray],
) -> dict[str, float]:
    """The raw signals of one case (before comparison with the training statistics).

    Args:
        volume: ``S x H x W x 3`` uint8 input.
        proba: ``S x H x W`` float probabilities the mask came from.
        mask: ``S x H x W`` final mask (after post-processing).
        other_probas: probabilities to compare ``proba`` with (the flipped input's, or every
            member's for an ensemble); their mean soft Dice with ``proba`` is the agreement.

    Returns:
        ``disagreement`` (1 - mean soft Dice), the mask signals and :func:`input_statistics`
        prefixed ``in_``.
    """
    agreement = float(np.mean([_soft_dice(proba, o) for o in other_probas])) if other_probas else 1.0
    stats = {f"in_{k}": v for k, v in input_statistics(volume).items()}
    return {"disagreement": 1.0 - agreement, **_mask_signals(proba, mask), **stats}


def _input_distance(signals: dict[str, float], reference: dict[str, list[float]]) -> float:
    """Mean absolute z-score of the input statistics against the training volumes' (mean, std)."""
    z = [abs(signals[k] - m) / max(s, 1e-3) for k, (m, s) in reference.items() if k in signals]
    return float(np.mean(z)) if z else math.nan


def score_signals(signals: dict[str, float], calibration: dict[str, Any]) -> dict[str, Any]:
    """``quality_score``, ``quality_flag`` and ``input_distance`` of a case from its raw signals.

    Args:
        signals: from :func:`quality_signals`.
        calibration: ``{"reference": {stat: [mean, std]}, "features": [...], "mean": [...],
            "scale": [...], "coef": [...], "intercept": float, "threshold": float}`` (logistic
            regression on standardised features predicting Dice < 0.5).

    Returns:
        ``{"input_distance", "quality_score", "quality_flag"}``.
    """
    values = {**signals, "input_distance": _input_distance(signals, calibration.get("reference", {}))}
    x = np.array([values[f] for f in calibration["features"]], dtype=np.float64)
    z = (x - np.asarray(calibration["mean"])) / np.asarray(calibration["scale"])
    logit = float(np.dot(np.asarray(calibration["coef"]), z) + float(calibration["intercept"]))
    score = 1.0 - 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
    flag = "ok" if score >= float(calibration["threshold"]) else "check"
    return {"input_distance": values["input_distance"], "quality_score": score, "quality_flag": flag}


@cache
def default_calibration() -> dict[str, Any] | None:
    """The calibration fitted for the bundled ``lgg-unet`` (package data), None when absent."""
    path = resources.files("gliomaseg.inference").joinpath("weights", "lgg-unet.quality.json")
    return json.loads(path.read_text()) if path.is_file() else None


def _calibration_of(
    meta: dict[str, Any] | None, calibration: dict[str, Any] | str | Path | None
) -> dict[str, Any] | None:
    if isinstance(calibration, str | Path):
        try:
            return json.loads(Path(calibration).read_text())
        except (OSError, ValueError) as err:
            msg = f"quality calibration {calibration}: cannot read it ({err}); pass a JSON file"
            raise GliomasegError(msg) from err
    if calibration is not None:
        return calibration
    stored = (meta or {}).get("quality")
    return stored if isinstance(stored, dict) else default_calibration()


def quality_for_case(
    segmenter: Any,
    volume: np.ndarray,
    proba: np.ndarray,
    mask: np.ndarray,
    *,
    member_probas: list[np.ndarray] | None = None,
    calibration: dict[str, Any] | str | Path | None = None,
) -> dict[str, Any]:
    """Quality signals, ``quality_score`` and ``quality_flag`` of one predicted case.

    Args:
        segmenter: the :class:`~gliomaseg.inference.Segmenter` that predicted the case (used for one
            flipped forward pass unless ``member_probas`` holds two or more members).
        volume: ``S x H x W x 3`` uint8 input as given to the segmenter.
        proba: its ``S x H x W`` probabilities (an ensemble's mean).
        mask: the final ``S x H x W`` mask.
        member_probas: each ensemble member's probabilities (from ``member_probas``), if known.
        calibration: a calibration dict or JSON file; default: the model file's, else the bundled one.

    Returns:
        The raw signals (see :func:`quality_signals`) plus ``input_distance``, ``quality_score``
        (0-1, higher = more trustworthy) and ``quality_flag`` (``ok`` or ``check``); without any
        calibration the score is NaN and the flag empty.

    Example:
        >>> row = quality_for_case(seg, volume, proba, mask)  # doctest: +SKIP
        >>> row["quality_flag"]  # doctest: +SKIP
        'ok'
    """
    if member_probas is not None and len(member_probas) > 1:
        others = list(member_probas)
        signals = quality_signals(volume, proba, mask, other_probas=others)
        # against the mean, each member disagrees less than with each other: use pairwise agreement
        pairs = [_soft_dice(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]
        signals["disagreement"] = 1.0 - float(np.mean(pairs))
    else:
        flipped = segmenter.predict_proba(np.ascontiguousarray(volume[:, :, ::-1]))[:, :, ::-1]
        signals = quality_signals(volume, proba, mask, other_probas=[flipped])
    chosen = _calibration_of(getattr(segmenter, "meta", None), calibration)
    if chosen is None:  # no calibration yet (while one is being made): the signals alone
        return {**signals, "input_distance": math.nan, "quality_score": math.nan, "quality_flag": ""}
    return {**signals, **score_signals(signals, chosen)}
