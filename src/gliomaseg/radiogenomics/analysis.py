"""Radiogenomics: do tumour shape features tell the genomic subtype? (Buda, Saha, Mazurowski 2019).

:func:`run_radiogenomics` measures the shape features (:mod:`gliomaseg.radiogenomics.shape`) of
every patient on the ground-truth masks and/or on predicted masks (one model, an ensemble, or
out-of-fold models of a study), joins them with the genomic clusters of ``data.csv`` (matched on the folder
name without its date) and tests every feature against every cluster variable
(:mod:`gliomaseg.radiogenomics.association`):

- the paper's method: feature split at its median, Fisher's exact test (``2 x k``), Bonferroni
  over the tests of a family;
- beside it, Kruskal-Wallis on the raw feature with Holm over the same family;
- ROC AUC of each feature for each cluster against the rest, with bootstrap CIs;
- agreement of predicted-mask with truth-mask features (correlation, Bland-Altman).

Families: the paper's three features x the cluster variables (its pre-specified hypotheses) form
one family per mask source; the descriptive features (volume, surface area, ...) another.

Outputs in ``out``: ``features.csv``, ``associations.csv``, ``auc.csv``, ``agreement.csv`` (with
predicted masks), ``summary.json``, ``radiogenomics.md``, ``report.html``, ``figures/``, and
``cache/`` (per-patient features, for ``resume``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg import __version__
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.radiogenomics.extract import FoldPredictors, PredictorFor, SinglePredictor, extract_features
from gliomaseg.radiogenomics.shape import FEATURES, PAPER_FEATURES
from gliomaseg.radiogenomics.tables import (
    CLUSTER_COLUMNS,
    PAPER_FINDINGS,
    agreement_table,
    association_tables,
    clinical_table,
    missing_clusters,
)
from gliomaseg.study.masks import ensemble_predictor, out_of_fold_models
from gliomaseg.utils import atomic_write_text

__all__ = ["OUTPUTS", "RADIOGENOMICS_FORMAT", "RadiogenomicsResult", "run_radiogenomics"]

log = logging.getLogger(__name__)

RADIOGENOMICS_FORMAT = "gliomaseg-radiogenomics/1"

#: Files this module writes in ``out`` (besides ``figures/`` and ``cache/``).
OUTPUTS = (
    "features.csv",
    "associations.csv",
    "auc.csv",
    "agreement.csv",
    "summary.json",
    "radiogenomics.md",
    "report.html",
)


@dataclass(frozen=True)
class RadiogenomicsResult:
    """What :func:`radiogenomics` wrote.

    Attributes:
        out: the output folder.
        features: one row per patient and mask source, features then cluster columns.
        associations: one row per mask source, feature and cluster variable.
        auc: one row per mask source, feature, cluster variable and category.
        agreement: one row per feature (empty without predicted masks).
        summary: the contents of ``summary.json``.
    """

    out: Path
    features: pd.DataFrame
    associations: pd.DataFrame
    auc: pd.DataFrame
    agreement: pd.DataFrame
    summary: dict[str, Any]


def _file_id(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime": int(stat.st_mtime)}


def _prepare_out(out: Path, settings: dict[str, Any], *, overwrite: bool, resume: bool) -> Path:
    """Check and create the output folder; returns the cache folder (kept only by ``resume``)."""
    cache = out / "cache"
    if out.exists() and not out.is_dir():
        raise GliomasegError(f"output {out} exists and is not a folder; choose another --out")
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and not (overwrite or resume):
        raise OutputExistsError(
            f"output folder {out} is not empty: pass --resume to continue an interrupted run with the same "
            "settings, --overwrite to replace its results, or choose another --out"
        )
    stored = cache / "settings.json"
    if resume and stored.is_file() and json.loads(stored.read_text()) != settings:
        raise GliomasegError(
            f"{out} was started with other settings ({stored}); use --overwrite to start again or another --out"
        )
    if not resume:
        shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out / "figures", ignore_errors=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    atomic_write_text(stored, json.dumps(settings, indent=2) + "\n")
    return cache


def _load_table(data: str | Path | None, index: str | Path | None, progress: bool) -> tuple[pd.DataFrame, str]:
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.index_table import load_index

    if index is not None:
        return load_index(index), str(Path(index).resolve())
    if data is None:
        raise GliomasegError("give the data folder (DATA_DIR) or an index file (--index)")
    return index_dataset(data, progress=progress).table, f"built from {Path(data).resolve()}"


def _predictions(
    models: Sequence[str | Path], study: str | Path | None, config: str | None, device: str
) -> tuple[PredictorFor | None, dict[str, Any]]:
    """The predictor plan and its description for the reports."""
    if study is not None and models:
        raise GliomasegError("give either model files (--model) or a study (--study/--study-config), not both")
    if study is not None:
        if not config:
            raise GliomasegError("--study needs --study-config NAME (the run folders are runs/<NAME>__fold<k>/)")
        oof = out_of_fold_models(study, config)
        info = {
            "kind": "out-of-fold",
            "study": str(Path(study).resolve()),
            "config": config,
            "splits": str(oof.splits_file),
            "fold_models": {str(k): str(p) for k, p in oof.models.items()},
            "patients_without_prediction": oof.without_prediction,
        }
        return FoldPredictors(oof, device=device), info
    if models:
        predict, info = ensemble_predictor(models, device=device)
        return SinglePredictor(predict), {"kind": "ensemble" if info["ensemble"] else "model", **info}
    return None, {}


def _settings(truth: bool, prediction: dict[str, Any], spacing: tuple[float, float, float]) -> dict[str, Any]:
    """What a cached run depends on: the mask sources, the spacing, the model files (size, time)."""
    files = [*prediction.get("models", []), *prediction.get("fold_models", {}).values()]
    ids = [_file_id(Path(f)) for f in files]
    return {"truth": truth, "spacing": list(spacing), "prediction": prediction, "files": ids}


def run_radiogenomics(
    data: str | Path | None,
    out: str | Path,
    *,
    index: str | Path | None = None,
    models: Sequence[str | Path] = (),
    study: str | Path | None = None,
    config: str | None = None,
    masks: str = "auto",
    clusters: Sequence[str] | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_boot: int = 2000,
    figures: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> RadiogenomicsResult:
    """Shape features of every patient, their association with the genomic clusters, and a report.

    Args:
        data: a ``kaggle_3m`` folder with ``data.csv`` (indexed here), or None with ``index``.
        out: output folder.
        index: an ``index.csv`` to use instead of indexing ``data``.
        models: model files (``.pt``/``.onnx``) predicting every patient; several are averaged.
        study: a study folder (``splits.json``, ``runs/<config>__fold<k>/`` models) for
            out-of-fold predictions; patients in no fold's ``val`` list get none.
        config: the study's configuration name.
        masks: ``truth``, ``predicted``, ``both`` or ``auto`` (both with a model or study, else truth).
        clusters: cluster columns to test (default: those of :data:`CLUSTER_COLUMNS` present).
        spacing: voxel size ``(slice, row, column)`` for volume, surface area and sphericity.
        n_boot: bootstrap resamples of the AUC confidence intervals.
        figures: draw the box plots.
        overwrite: replace the results in a non-empty ``out``.
        resume: continue an interrupted run in ``out`` (same settings), reusing its cached features.
        device: device of ``.pt`` models.
        progress: tqdm progress bars.

    Returns:
        :class:`RadiogenomicsResult`.

    Raises:
        GliomasegError: bad settings, no cluster columns, missing fold models.
        OutputExistsError: a non-empty ``out`` without ``overwrite`` or ``resume``.

    Example:
        >>> result = run_radiogenomics("kaggle_3m", "radiogenomics_truth")  # doctest: +SKIP
        >>> result.associations.query("feature == 'bevr' and cluster == 'RNASeqCluster'")  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if masks not in ("auto", "truth", "predicted", "both"):
        raise GliomasegError(f"masks={masks!r}: choose truth, predicted, both or auto")
    predictor, prediction = _predictions(models, study, config, device)
    if masks == "auto":
        masks = "both" if predictor is not None else "truth"
    if predictor is None and masks != "truth":
        raise GliomasegError(f"masks={masks!r} needs a model (--model) or a study (--study/--study-config)")
    if predictor is not None and masks == "truth":
        raise GliomasegError("masks='truth' takes no model: drop --model/--study, or use --masks both")
    truth = masks in ("truth", "both")
    out = Path(out)
    cache = _prepare_out(out, _settings(truth, prediction, spacing), overwrite=overwrite, resume=resume)
    table, index_source = _load_table(data, index, progress)
    clusters = list(clusters) if clusters else [c for c in CLUSTER_COLUMNS if c in table.columns]
    if not clusters:
        raise GliomasegError(
            "no genomic cluster columns in the data: put the Kaggle data.csv beside the patient folders"
        )
    clinical = clinical_table(table, clusters)
    features = extract_features(
        table, truth=truth, predictor_for=predictor, spacing=spacing, cache=cache, progress=progress
    )
    assoc, auc = association_tables(features, clinical, clusters, n_boot=n_boot)
    agree = agreement_table(features)
    joined = features.merge(clinical, on="patient_id", how="left")
    joined.insert(1, "patient", joined.pop("patient"))
    summary = _summary(table, index_source, clinical, clusters, features, assoc, prediction, masks, spacing)
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    from gliomaseg.radiogenomics.report import write_outputs

    write_outputs(out, summary, joined, assoc, auc, agree, figures=figures)
    return RadiogenomicsResult(out, joined, assoc, auc, agree, summary)


def _summary(
    table: pd.DataFrame,
    index_source: str,
    clinical: pd.DataFrame,
    clusters: Sequence[str],
    features: pd.DataFrame,
    assoc: pd.DataFrame,
    prediction: dict[str, Any],
    masks: str,
    spacing: tuple[float, float, float],
) -> dict[str, Any]:
    patients = sorted(table["patient_id"].unique())
    predicted = set(features.loc[features["masks"] == "predicted", "patient_id"])
    empty = {
        m: sorted(part.loc[part["volume"].isna(), "patient_id"]) for m, part in features.groupby("masks", sort=True)
    }
    tests = (
        {
            m: {fam: int(g["n_tests"].iloc[0]) for fam, g in part.groupby("family", sort=True)}
            for m, part in assoc.groupby("masks", sort=True)
        }
        if not assoc.empty
        else {}
    )
    return {
        "format": RADIOGENOMICS_FORMAT,
        "package_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"index": index_source, "n_patients": len(patients), "n_slices": len(table)},
        "masks": masks,
        "prediction": prediction,
        "patients_without_prediction": sorted(set(patients) - predicted) if prediction else [],
        "patients_with_empty_mask": empty,
        "spacing": list(spacing),
        "clusters": list(clusters),
        "missing_clusters": missing_clusters(clinical, clusters),
        "features": [asdict(f) for f in FEATURES],
        "paper_features": list(PAPER_FEATURES),
        "tests": tests,
        "paper": {
            "reference": "Buda, Saha, Mazurowski, Computers in Biology and Medicine 109 (2019); arXiv 1906.03720",
            "patients": 110,
            "threshold": "p < 0.005 (Bonferroni)",
            "findings": [{"feature": f, "cluster": c, "p": p} for (f, c), p in PAPER_FINDINGS.items()],
        },
    }
