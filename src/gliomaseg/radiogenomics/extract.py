"""Shape features of every patient of an index, from truth and/or predicted masks, resumable.

Each patient's features are written to ``cache/<masks>/<patient_id>.json`` as soon as they are
computed, so an interrupted run (predictions are the slow part) picks up where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gliomaseg.data.io import read_mask
from gliomaseg.radiogenomics.shape import FEATURES, shape_features
from gliomaseg.study.masks import OutOfFold, Predictor, ensemble_predictor
from gliomaseg.utils import atomic_write_text

__all__ = ["MASK_SOURCES", "FoldPredictors", "PredictorFor", "SinglePredictor", "extract_features"]

#: The kinds of masks features are measured on.
MASK_SOURCES = ("truth", "predicted")
_READ_WORKERS = 2


class PredictorFor:
    """Each patient's predictor: ``self(pid)`` -> ``(predict, fold)``, or None for no prediction.

    Attributes:
        fold_of: patient id -> fold, for visiting patients fold by fold (empty: no folds).
    """

    fold_of: Mapping[str, int] = MappingProxyType({})

    def __call__(self, pid: str) -> tuple[Predictor, int | None] | None:
        raise NotImplementedError


class SinglePredictor(PredictorFor):
    """Every patient predicted by ``predict`` (one model or an ensemble), no fold."""

    def __init__(self, predict: Predictor) -> None:
        self.predict = predict

    def __call__(self, pid: str) -> tuple[Predictor, int | None]:
        return self.predict, None


class FoldPredictors(PredictorFor):
    """Each patient predicted by the model of the fold that holds it out; one model loaded at a time."""

    def __init__(self, oof: OutOfFold, *, device: str = "auto") -> None:
        self.oof, self.device = oof, device
        self.fold_of = oof.fold_of
        self._loaded: dict[int, Predictor] = {}

    def __call__(self, pid: str) -> tuple[Predictor, int | None] | None:
        k = self.oof.fold_of.get(pid)
        if k is None:
            return None
        if k not in self._loaded:
            self._loaded.clear()  # free the previous fold's model first
            self._loaded[k] = ensemble_predictor([self.oof.models[k]], device=self.device)[0]
        return self._loaded[k], k


def _cached(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def _record(pid: str, masks: str, fold: int | None, features: dict[str, float]) -> dict[str, Any]:
    return {"patient_id": pid, "masks": masks, "fold": fold, **features}


def _store(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        atomic_write_text(path, json.dumps(clean) + "\n")


def extract_features(
    table: pd.DataFrame,
    *,
    truth: bool = True,
    predictor_for: PredictorFor | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    cache: Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Shape features of every patient of an index table.

    Args:
        table: an index table (:func:`gliomaseg.data.index.index_dataset`).
        truth: measure the ground-truth masks.
        predictor_for: gives each patient's predictor (None: no predicted masks).
        spacing: voxel size passed to :func:`~gliomaseg.radiogenomics.shape.shape_features`.
        cache: folder of per-patient results to reuse and extend (None: no cache).
        progress: tqdm progress bar over patients.

    Returns:
        One row per patient and mask source: ``patient_id``, ``masks`` (``truth``/``predicted``),
        ``fold`` (the out-of-fold model's fold, else empty), then every feature (NaN for an empty
        mask). Patients without a prediction have no ``predicted`` row.

    Example:
        >>> from gliomaseg.data.index import index_dataset
        >>> table = index_dataset("kaggle_3m").table  # doctest: +SKIP
        >>> extract_features(table, progress=False)[["patient_id", "bevr"]].head(2)  # doctest: +SKIP
    """
    from gliomaseg.data.index_table import read_patient

    groups = {pid: rows.sort_values("slice") for pid, rows in table.groupby("patient_id", sort=True)}
    fold_of = predictor_for.fold_of if predictor_for is not None else {}
    # Fold by fold, so each out-of-fold model is loaded once.
    order = sorted(groups, key=lambda pid: (fold_of.get(pid, -1), pid))
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(_READ_WORKERS) as pool:
        for pid in tqdm(order, desc="shape features", unit="patient", disable=not progress):
            rows = groups[pid]
            if truth:
                path = cache / "truth" / f"{pid}.json" if cache else None
                rec = _cached(path)
                if rec is None:
                    mask = np.stack(list(pool.map(read_mask, rows["mask_path"]))).astype(bool)
                    rec = _record(pid, "truth", None, shape_features(mask, spacing))
                    _store(path, rec)
                records.append(rec)
            found = predictor_for(pid) if predictor_for is not None else None
            if found is not None:
                path = cache / "predicted" / f"{pid}.json" if cache else None
                rec = _cached(path)
                if rec is None:
                    predict, fold = found
                    images, _ = read_patient(rows, pool)
                    rec = _record(pid, "predicted", fold, shape_features(predict(images), spacing))
                    _store(path, rec)
                records.append(rec)
    columns = ["patient_id", "masks", "fold", *(f.name for f in FEATURES)]
    out = pd.DataFrame.from_records(records, columns=columns)
    out["fold"] = out["fold"].astype("Int64")
    feats = [f.name for f in FEATURES]
    out[feats] = out[feats].astype(float)
    return out.sort_values(["masks", "patient_id"], ignore_index=True)
