"""Radiogenomics (``gliomaseg radiogenomics``): tumour shape features against the genomic clusters of ``data.csv``.

- :mod:`~gliomaseg.radiogenomics.shape`: shape features of one mask;
- :mod:`~gliomaseg.radiogenomics.association`: Fisher, Kruskal-Wallis, AUC, agreement;
- :mod:`~gliomaseg.radiogenomics.extract`: features of every patient from truth, model or
  out-of-fold masks (the latter from a study, :mod:`gliomaseg.study.masks`);
- :mod:`~gliomaseg.radiogenomics.tables`: the association and agreement tables;
- :mod:`~gliomaseg.radiogenomics.analysis` (``run_radiogenomics``, the whole analysis) and
  :mod:`~gliomaseg.radiogenomics.report` (its CSV, JSON, Markdown, HTML and figures).

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "FEATURES": "gliomaseg.radiogenomics.shape",
    "PAPER_FEATURES": "gliomaseg.radiogenomics.shape",
    "Feature": "gliomaseg.radiogenomics.shape",
    "angular_standard_deviation": "gliomaseg.radiogenomics.shape",
    "bounding_ellipsoid_volume_ratio": "gliomaseg.radiogenomics.shape",
    "margin_fluctuation": "gliomaseg.radiogenomics.shape",
    "radial_profile": "gliomaseg.radiogenomics.shape",
    "shape_features": "gliomaseg.radiogenomics.shape",
    "MAX_TABLES": "gliomaseg.radiogenomics.association",
    "Agreement": "gliomaseg.radiogenomics.association",
    "agreement": "gliomaseg.radiogenomics.association",
    "auc_with_ci": "gliomaseg.radiogenomics.association",
    "correct": "gliomaseg.radiogenomics.association",
    "fisher_exact_2xk": "gliomaseg.radiogenomics.association",
    "fisher_median_split": "gliomaseg.radiogenomics.association",
    "kruskal_wallis": "gliomaseg.radiogenomics.association",
    "median_split_table": "gliomaseg.radiogenomics.association",
    "MASK_SOURCES": "gliomaseg.radiogenomics.extract",
    "FoldPredictors": "gliomaseg.radiogenomics.extract",
    "PredictorFor": "gliomaseg.radiogenomics.extract",
    "SinglePredictor": "gliomaseg.radiogenomics.extract",
    "extract_features": "gliomaseg.radiogenomics.extract",
    "CLUSTER_COLUMNS": "gliomaseg.radiogenomics.tables",
    "PAPER_FINDINGS": "gliomaseg.radiogenomics.tables",
    "agreement_table": "gliomaseg.radiogenomics.tables",
    "association_tables": "gliomaseg.radiogenomics.tables",
    "clinical_table": "gliomaseg.radiogenomics.tables",
    "missing_clusters": "gliomaseg.radiogenomics.tables",
    "OUTPUTS": "gliomaseg.radiogenomics.analysis",
    "RADIOGENOMICS_FORMAT": "gliomaseg.radiogenomics.analysis",
    "RadiogenomicsResult": "gliomaseg.radiogenomics.analysis",
    "run_radiogenomics": "gliomaseg.radiogenomics.analysis",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.radiogenomics.analysis import (
        OUTPUTS,
        RADIOGENOMICS_FORMAT,
        RadiogenomicsResult,
        run_radiogenomics,
    )
    from gliomaseg.radiogenomics.association import (
        MAX_TABLES,
        Agreement,
        agreement,
        auc_with_ci,
        correct,
        fisher_exact_2xk,
        fisher_median_split,
        kruskal_wallis,
        median_split_table,
    )
    from gliomaseg.radiogenomics.extract import (
        MASK_SOURCES,
        FoldPredictors,
        PredictorFor,
        SinglePredictor,
        extract_features,
    )
    from gliomaseg.radiogenomics.shape import (
        FEATURES,
        PAPER_FEATURES,
        Feature,
        angular_standard_deviation,
        bounding_ellipsoid_volume_ratio,
        margin_fluctuation,
        radial_profile,
        shape_features,
    )
    from gliomaseg.radiogenomics.tables import (
        CLUSTER_COLUMNS,
        PAPER_FINDINGS,
        agreement_table,
        association_tables,
        clinical_table,
        missing_clusters,
    )
