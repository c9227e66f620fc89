"""The figures of one evaluation: overlays of the chosen, best, median and worst patients, the Dice
distribution and the learning curves of the run (the report shows them)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from gliomaseg.data.index_table import read_patient
from gliomaseg.evaluation.plan import EvaluationPlan

__all__ = ["dice_text", "draw_figures", "ranked_patients"]


def ranked_patients(per_patient: pd.DataFrame) -> dict[str, str]:
    """Best, median and worst patients by volume Dice (patients with tumour only): label -> id."""
    scored = per_patient.dropna(subset=["dice"]).sort_values(["dice", "patient_id"], ascending=[False, True])
    if scored.empty:
        return {}
    ids = scored["patient_id"].tolist()
    return {"best": ids[0], "median": ids[len(ids) // 2], "worst": ids[-1]}


def dice_text(dice: float) -> str:
    return "n/a, no tumour" if dice is None or math.isnan(dice) else f"{dice:.3f}"


def draw_figures(
    fig_dir: Path,
    per_patient: pd.DataFrame,
    packed: dict[str, tuple[np.ndarray, tuple[int, ...]]],
    plan: EvaluationPlan,
    ckpt_path: Path,
    epoch: int | None,
) -> list[tuple[str, Path]]:
    """Overlays (chosen, best, median, worst), Dice distribution and learning curves of one evaluation.

    Args:
        fig_dir: the evaluation's ``figures/`` folder.
        per_patient: the per-patient table (``patient_id``, ``dice``).
        packed: patient id -> (bit-packed predicted mask, its ``S x H x W`` shape).
        plan: what the evaluation covers (rows per patient, the patients asked for).
        ckpt_path: the model file (its run folder's training log gives the learning curves).
        epoch: the model's epoch, marked on the curves.

    Returns:
        ``(caption, path)`` of every figure written, for the report.
    """
    from gliomaseg.evaluation.figures import plot_dice_distribution, plot_learning_curves, plot_patient_overlays

    rows_by_patient = plan.rows_by_patient()
    labels: dict[str, list[str]] = {pid: ["chosen"] for pid in plan.chosen}
    for label, pid in ranked_patients(per_patient).items():
        labels.setdefault(pid, []).append(label)
    dice_of = dict(zip(per_patient["patient_id"], per_patient["dice"]))
    out: list[tuple[str, Path]] = []
    with ThreadPoolExecutor(2) as pool:  # reading overlaps drawing
        for pid, names in labels.items():
            rows = rows_by_patient[pid]
            images, truth = read_patient(rows, pool)
            bits, shape = packed[pid]
            pred = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)
            tag = ", ".join(names)
            title = f"{pid}: volume Dice {dice_text(dice_of[pid])} ({tag})"
            path = plot_patient_overlays(
                fig_dir / f"overlay_{'_'.join(names)}_{pid}.png",
                images,
                truth,
                pred,
                title=title,
                slice_numbers=rows["slice"].tolist(),
            )
            out.append((f"{tag} patient {pid}: FLAIR with ground truth (green) and prediction (red)", path))
    path = plot_dice_distribution(fig_dir / "dice_distribution.png", per_patient["dice"])
    out.append(("Distribution of per-patient volume Dice", path))
    from gliomaseg.training.logs import read_training_log

    curves = plot_learning_curves(
        fig_dir / "learning_curves.png", read_training_log(ckpt_path.parent), best_epoch=epoch
    )
    if curves is not None:
        out.append(("Learning curves of the training run", curves))
    return out
