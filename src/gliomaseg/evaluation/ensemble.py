"""What an ensemble gains over its members, measured on the same patients in the same evaluation.

When ``evaluate`` gets several model files it segments each patient with every member once; the
ensemble's mask comes from the members' averaged probabilities, and each member's own mask from its
probabilities alone, both through the same post-processing. Comparing them patient by patient
answers the question a reader asks of an ensemble: is it better than simply its best member?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.evaluation.metrics import dice_from_counts
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume

__all__ = ["ensemble_summary", "member_dice"]


def member_dice(probas: Sequence[np.ndarray], truth: np.ndarray, postprocess: PostprocessConfig) -> list[float]:
    """Volume Dice of each member's own post-processed mask against ``truth`` (``S x H x W`` bool)."""
    out = []
    for proba in probas:
        pred = postprocess_volume(proba, postprocess)
        out.append(float(dice_from_counts((pred & truth).sum(), pred.sum(), truth.sum())))
    return out


def ensemble_summary(
    checkpoints: Sequence[Path], members: dict[str, list[float]], per_patient: pd.DataFrame
) -> dict[str, Any]:
    """The ensemble against its members on the same patients (patients with tumour).

    Args:
        checkpoints: the member model files, in member order.
        members: patient id -> each member's volume Dice.
        per_patient: the ensemble's per-patient table (``patient_id``, ``dice``).

    Returns:
        ``members`` (checkpoint and mean Dice each), ``ensemble_dice_mean``, ``mean_member_dice``,
        ``best_member_dice``, the gains over the mean and the best member, and how many patients the
        ensemble improved over the average of the members.
    """
    ensemble = per_patient.set_index("patient_id")["dice"].astype(float)
    table = pd.DataFrame.from_dict(members, orient="index").reindex(ensemble.index)
    scored = ensemble.notna()
    means = [float(table.loc[scored, k].mean()) for k in table.columns]
    ens_mean = float(ensemble[scored].mean())
    mean_member = float(np.mean(means)) if means else math.nan
    improved = (ensemble[scored] > table.loc[scored].mean(axis=1) + 1e-9).sum()
    return {
        "members": [
            {"checkpoint": str(c), "dice_mean": m, "dice_min": float(table.loc[scored, k].min())}
            for c, m, k in zip(checkpoints, means, table.columns)
        ],
        "n_patients": int(scored.sum()),
        "ensemble_dice_mean": ens_mean,
        "ensemble_dice_min": float(ensemble[scored].min()) if scored.any() else math.nan,
        "mean_member_dice": mean_member,
        "best_member_dice": max(means) if means else math.nan,
        "gain_over_mean_member": ens_mean - mean_member,
        "gain_over_best_member": ens_mean - max(means) if means else math.nan,
        "patients_improved_over_member_average": int(improved),
    }
