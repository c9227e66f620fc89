"""Studies on top of the pipeline: radiogenomics (shape features vs genomic clusters).

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "FEATURES": "gliomaseg.study.shape",
    "PAPER_FEATURES": "gliomaseg.study.shape",
    "Feature": "gliomaseg.study.shape",
    "angular_standard_deviation": "gliomaseg.study.shape",
    "bounding_ellipsoid_volume_ratio": "gliomaseg.study.shape",
    "margin_fluctuation": "gliomaseg.study.shape",
    "radial_profile": "gliomaseg.study.shape",
    "shape_features": "gliomaseg.study.shape",
    "Agreement": "gliomaseg.study.association",
    "agreement": "gliomaseg.study.association",
    "auc_with_ci": "gliomaseg.study.association",
    "correct": "gliomaseg.study.association",
    "fisher_exact_2xk": "gliomaseg.study.association",
    "fisher_median_split": "gliomaseg.study.association",
    "kruskal_wallis": "gliomaseg.study.association",
    "median_split_table": "gliomaseg.study.association",
    "OutOfFold": "gliomaseg.study.masks",
    "ensemble_predictor": "gliomaseg.study.masks",
    "out_of_fold_models": "gliomaseg.study.masks",
    "extract_features": "gliomaseg.study.extract",
    "CLUSTER_COLUMNS": "gliomaseg.study.tables",
    "PAPER_FINDINGS": "gliomaseg.study.tables",
    "RadiogenomicsResult": "gliomaseg.study.radiogenomics",
    "run_radiogenomics": "gliomaseg.study.radiogenomics",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.study.association import (
        Agreement,
        agreement,
        auc_with_ci,
        correct,
        fisher_exact_2xk,
        fisher_median_split,
        kruskal_wallis,
        median_split_table,
    )
    from gliomaseg.study.extract import extract_features
    from gliomaseg.study.masks import OutOfFold, ensemble_predictor, out_of_fold_models
    from gliomaseg.study.radiogenomics import RadiogenomicsResult, run_radiogenomics
    from gliomaseg.study.shape import (
        FEATURES,
        PAPER_FEATURES,
        Feature,
        angular_standard_deviation,
        bounding_ellipsoid_volume_ratio,
        margin_fluctuation,
        radial_profile,
        shape_features,
    )
    from gliomaseg.study.tables import CLUSTER_COLUMNS, PAPER_FINDINGS
