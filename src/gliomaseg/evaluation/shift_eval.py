"""Score a model on shifted copies of the evaluated patients (``evaluate --shift NAME``, issue 25).

For every evaluated patient and every requested shift of :mod:`gliomaseg.evaluation.shifts`, the
patient's volume and ground truth are shifted with a per-patient seed
(:func:`~gliomaseg.evaluation.shifts.case_seed`), segmented and post-processed exactly as in-domain,
and scored against the shifted ground truth. Each case also gets the quality signals and score of
:func:`gliomaseg.inference.quality.quality_for_case`, which is what calibrates the quality flag.

Outputs: ``shifts.csv`` (one row per patient and shift) and the ``shifts`` section of
``summary.json``: per shift the mean per-patient Dice with its bootstrap CI, median, worst,
10th percentile, and the drop against the in-domain Dice of the same patients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gliomaseg.data.index_table import read_patient
from gliomaseg.evaluation.aggregate import summarise
from gliomaseg.evaluation.metrics import binary_metrics
from gliomaseg.evaluation.plan import EvaluationPlan
from gliomaseg.evaluation.postprocess import postprocess_volume
from gliomaseg.evaluation.shifts import SHIFTS, apply_shift, case_seed
from gliomaseg.inference.quality import quality_for_case

__all__ = ["SHIFT_COLUMNS", "score_shifts", "shift_summary"]

#: The leading columns of ``shifts.csv`` (quality signals follow).
SHIFT_COLUMNS = ("patient_id", "shift", "seed", "dice", "precision", "sensitivity", "truth_pixels", "pred_pixels")


def case_row(seg: Any, volume: np.ndarray, truth: np.ndarray, quality: bool = True) -> dict[str, Any]:
    """Segment one (shifted) volume, score it against ``truth`` and add its quality signals.

    Returns:
        The volume metrics of :func:`~gliomaseg.evaluation.metrics.binary_metrics` and, with
        ``quality``, those of :func:`~gliomaseg.inference.quality.quality_for_case`.
    """
    proba, probas = seg.probabilities(volume)
    pred = postprocess_volume(proba, seg.postprocess)
    row: dict[str, Any] = dict(binary_metrics(pred, truth))
    if quality:
        members = probas if len(probas) > 1 else None  # every signal, for fitting calibrations
        row.update(quality_for_case(seg, volume, proba, pred, member_probas=members, all_signals=True))
    return row


def score_shifts(
    seg: Any, plan: EvaluationPlan, shifts: Sequence[str], *, seed: int = 0, progress: bool = True
) -> tuple[pd.DataFrame, float]:
    """Every evaluated patient under every shift.

    Args:
        seg: the :class:`~gliomaseg.inference.Segmenter` (or ensemble) being evaluated.
        plan: the evaluation's plan (patients and their index rows).
        shifts: registered shift names (already validated).
        seed: the shifts' seed; each patient and shift gets its own from it.
        progress: a tqdm bar over patients.

    Returns:
        ``(table, seconds)``: one row per patient and shift (:data:`SHIFT_COLUMNS` first, then the
        quality columns), and the time spent.
    """
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    by_patient = plan.rows_by_patient()
    with ThreadPoolExecutor(2) as pool:
        for pid in tqdm(plan.patients, desc="shifts", unit="patient", disable=not progress):
            images, truth = read_patient(by_patient[pid], pool)
            for name in shifts:
                s = case_seed(seed, name, pid)
                volume, mask = apply_shift(name, images, truth, seed=s)
                rows.append({"patient_id": pid, "shift": name, "seed": s, **case_row(seg, volume, mask)})
    table = pd.DataFrame(rows)
    lead = [c for c in SHIFT_COLUMNS if c in table.columns]
    return table[lead + [c for c in table.columns if c not in lead]], time.perf_counter() - t0


def shift_summary(table: pd.DataFrame, in_domain: pd.DataFrame, *, seed: int, n_boot: int = 2000) -> dict[str, Any]:
    """The ``shifts`` section of ``summary.json``.

    Args:
        table: from :func:`score_shifts`.
        in_domain: the evaluation's per-patient table (``patient_id``, ``dice``).
        seed: the shifts' seed (recorded).
        n_boot: bootstrap resamples for the CIs.

    Returns:
        ``{"seed", "in_domain": {...}, "per_shift": {name: {description, n, mean, ci_low, ci_high,
        median, min, p10, drop, n_worse, quality_flagged}}}``; ``drop`` is the shift's mean minus
        the in-domain mean over the same patients (negative = worse).
    """
    base = in_domain.set_index("patient_id")["dice"].astype(float)
    per_shift: dict[str, Any] = {}
    for name, group in table.groupby("shift", sort=False):
        dice = group.set_index("patient_id")["dice"].astype(float)
        both = dice.index[dice.notna() & base.reindex(dice.index).notna()]
        stats = summarise(dice.to_numpy(), n_boot=n_boot)
        paired = dice[both] - base[both]
        flagged = int((group["quality_flag"] == "check").sum()) if "quality_flag" in group else None
        per_shift[str(name)] = {
            "description": SHIFTS[str(name)].description,
            **{k: stats[k] for k in ("n", "mean", "ci_low", "ci_high", "median", "min", "p10")},
            "drop": float(paired.mean()) if len(paired) else math.nan,
            "n_worse": int((paired < 0).sum()),
            "quality_flagged": flagged,
        }
    return {
        "seed": int(seed),
        "in_domain": {k: v for k, v in summarise(base.to_numpy(), n_boot=n_boot).items() if k != "n_missing"},
        "per_shift": per_shift,
    }
