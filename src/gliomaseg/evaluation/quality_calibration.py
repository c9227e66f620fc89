"""Fit the quality flag of :mod:`gliomaseg.inference.quality` on evaluated cases (issue 25).

Input: evaluation folders of one model (``per_patient.csv``: in-domain cases; ``shifts.csv``: the
same patients under shifts), each row with its Dice and raw quality signals. Output: the small
calibration dict that :func:`gliomaseg.inference.quality.score_signals` applies, and how well the
score finds the cases with Dice < 0.5:

- ``reference``: mean and std of the input statistics over the in-domain cases (the training
  volumes' statistics when the evaluated patients are training patients, as for the bundled model);
  ``input_distance`` is measured against them.
- a logistic regression (scikit-learn, L2, standardised features) predicting Dice < 0.5 from
  :data:`~gliomaseg.inference.quality.SIGNALS`, or a chosen subset of them (prediction computes only
  the signals its calibration lists: without ``disagreement``, no second forward pass);
  ``quality_score`` = 1 - its probability.
- AUROC of the score out of fold: patients are split into 5 groups and each group's cases are
  scored by a model fitted on the others (all cases of a patient, shifted or not, stay together),
  with a 95% CI from 2000 bootstrap resamples of patients.
- ``threshold``: the highest score below which at least ``target_sensitivity`` of the
  Dice < 0.5 cases fall, out of fold; the flag is ``check`` below it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.errors import GliomasegError
from gliomaseg.inference.quality import SIGNALS, check_signals, score_signals

__all__ = ["FAIL_DICE", "auroc_with_ci", "fit_quality", "load_cases"]

#: A case "fails" below this Dice.
FAIL_DICE = 0.5


def load_cases(folders: Sequence[str | Path]) -> pd.DataFrame:
    """The in-domain and shifted cases of evaluation folders, one row each, ``shift`` = ``none`` in-domain.

    Raises:
        GliomasegError: a folder without ``per_patient.csv``.
    """
    tables = []
    for folder in map(Path, folders):
        per_patient = folder / "per_patient.csv"
        if not per_patient.is_file():
            raise GliomasegError(f"{folder} has no per_patient.csv: pass evaluation folders (gliomaseg evaluate --out)")
        tables.append(pd.read_csv(per_patient).assign(shift="none"))
        if (folder / "shifts.csv").is_file():
            tables.append(pd.read_csv(folder / "shifts.csv"))
    cases = pd.concat(tables, ignore_index=True)
    return cases[cases["dice"].notna()].reset_index(drop=True)


def _reference(cases: pd.DataFrame) -> dict[str, list[float]]:
    inside = cases[cases["shift"] == "none"]
    columns = [c for c in cases.columns if c.startswith("in_")]
    return {c: [float(inside[c].mean()), float(max(inside[c].std(), 1e-3))] for c in columns}


def _features(cases: pd.DataFrame, reference: dict[str, list[float]], signals: Sequence[str]) -> np.ndarray:
    z = [(cases[c] - m).abs() / s for c, (m, s) in reference.items()]
    distance = pd.concat(z, axis=1).mean(axis=1) if z else pd.Series(math.nan, index=cases.index)
    table = cases.assign(input_distance=distance)
    missing = sorted(set(signals) - set(table.columns))
    if missing:
        raise GliomasegError(
            f"the evaluated cases lack the signal(s) {missing}: evaluate them again (gliomaseg evaluate)"
        )
    return table[list(signals)].to_numpy(dtype=np.float64)


def _fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)


def auroc_with_ci(
    y: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """AUROC of ``-score`` for ``y`` (a low quality score should mean a failure), with a 95% CI
    from resampling ``groups`` (patients) with replacement."""
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, -score))
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    rows = {g: np.flatnonzero(groups == g) for g in ids}
    boot = []
    for _ in range(n_boot):
        take = np.concatenate([rows[g] for g in rng.choice(ids, len(ids))])
        if 0 < y[take].sum() < len(take):
            boot.append(roc_auc_score(y[take], -score[take]))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"auroc": auc, "ci_low": float(low), "ci_high": float(high), "n": int(len(y)), "n_fail": int(y.sum())}


def fit_quality(
    cases: pd.DataFrame,
    *,
    signals: Sequence[str] = SIGNALS,
    target_sensitivity: float = 0.8,
    folds: int = 5,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Fit the calibration on evaluated cases and measure it out of fold.

    Args:
        cases: from :func:`load_cases` (columns ``patient_id``, ``shift``, ``dice``, the signals).
        signals: the signals to fit on (names from :data:`~gliomaseg.inference.quality.SIGNALS`);
            the calibration lists them, and prediction computes only those.
        target_sensitivity: the share of Dice < 0.5 cases the flag must catch (out of fold).
        folds: patient groups for the out-of-fold scores.
        n_boot: bootstrap resamples of patients for the AUROC intervals.

    Returns:
        ``{"calibration": {...}, "evaluation": {...}}``: the dict for ``score_signals`` and the
        out-of-fold AUROC (all cases, in-domain only, shifted only), flag rates and the threshold.

    Raises:
        GliomasegError: no failing or no passing case (nothing to calibrate on), no signal or an
            unknown one.
    """
    from sklearn.model_selection import GroupKFold

    signals = check_signals(signals, "fit_quality")
    if not signals:
        raise GliomasegError(f"fit_quality: give at least one signal of {', '.join(SIGNALS)}")
    uses_input = "input_distance" in signals  # the training statistics are needed only for it

    y = (cases["dice"].to_numpy() < FAIL_DICE).astype(int)
    if y.sum() == 0 or y.sum() == len(y):
        raise GliomasegError(f"need cases with Dice both below and above {FAIL_DICE} to calibrate; got {len(y)} cases")
    groups = cases["patient_id"].to_numpy()
    oof = np.empty(len(y))
    for train, held in GroupKFold(n_splits=folds).split(cases, y, groups):
        reference = _reference(cases.iloc[train]) if uses_input else {}
        model = _fit(_features(cases.iloc[train], reference, signals), y[train])
        oof[held] = 1.0 - model.predict_proba(_features(cases.iloc[held], reference, signals))[:, 1]
    # the flag is "score < threshold": just above the quantile, so that at least the target share is below it
    threshold = float(np.nextafter(np.quantile(oof[y == 1], target_sensitivity, method="higher"), np.inf))
    reference = _reference(cases) if uses_input else {}
    model = _fit(_features(cases, reference, signals), y)
    scaler, logistic = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    calibration = {
        "format": "gliomaseg-quality/1",
        "target": f"Dice < {FAIL_DICE}",
        "features": list(signals),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        # the score is 1 - P(fail): coefficients of the failure's logit
        "coef": logistic.coef_[0].tolist(),
        "intercept": float(logistic.intercept_[0]),
        "threshold": threshold,
        "reference": reference,
    }
    shifted = (cases["shift"] != "none").to_numpy()
    evaluation: dict[str, Any] = {"out_of_fold": auroc_with_ci(y, oof, groups, n_boot)}
    for name, part in (("in_domain", ~shifted), ("shifted", shifted)):
        if 0 < y[part].sum() < part.sum():
            evaluation[name] = auroc_with_ci(y[part], oof[part], groups[part], n_boot)
    flagged = oof < threshold
    evaluation.update(
        threshold=threshold,
        sensitivity=float(flagged[y == 1].mean()),
        flagged_share=float(flagged.mean()),
        flagged_share_of_good=float(flagged[y == 0].mean()),
        n_patients=int(len(np.unique(groups))),
    )
    return {"calibration": calibration, "evaluation": evaluation}


def score_cases(cases: pd.DataFrame, calibration: dict[str, Any]) -> np.ndarray:
    """``quality_score`` of every case under a calibration (as prediction computes it)."""
    signals = cases.to_dict("records")
    return np.array([score_signals(s, calibration)["quality_score"] for s in signals])
