"""The tables of the radiogenomics analysis: clusters per patient, associations, AUCs, agreement.

Pure functions over the features table of :func:`gliomaseg.radiogenomics.extract.extract_features`; the
statistics themselves are in :mod:`gliomaseg.radiogenomics.association`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.data.index_table import CLUSTER_COLUMNS
from gliomaseg.errors import GliomasegError
from gliomaseg.radiogenomics.association import (
    agreement,
    auc_with_ci,
    correct,
    fisher_median_split,
    kruskal_wallis,
    median_split_table,
)
from gliomaseg.radiogenomics.shape import FEATURES

__all__ = [
    "CLUSTER_COLUMNS",
    "PAPER_FINDINGS",
    "agreement_table",
    "association_tables",
    "clinical_table",
    "missing_clusters",
]


#: What Buda et al. 2019 report (110 patients, automatic masks, Bonferroni threshold p < 0.005).
PAPER_FINDINGS = {
    ("bevr", "RNASeqCluster"): "p < 0.0002",
    ("margin_fluctuation", "RNASeqCluster"): "p < 0.005",
}


def _category(value: Any) -> str:
    """``1.0`` -> ``"1"``: data.csv codes read as floats when a column has blanks."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def clinical_table(table: pd.DataFrame, clusters: Sequence[str]) -> pd.DataFrame:
    """One row per patient: ``patient_id``, ``patient`` and the cluster columns as category strings.

    Raises:
        GliomasegError: a requested cluster column is not in the index (no ``data.csv``?).
    """
    missing = [c for c in clusters if c not in table.columns]
    if missing:
        raise GliomasegError(
            f"cluster column(s) {', '.join(missing)} not found: the data folder needs the Kaggle data.csv "
            "(keyed by Patient) beside the patient folders, or choose other --clusters"
        )
    per_patient = table.groupby("patient_id", sort=True).first().reset_index()
    out = per_patient[["patient_id", "patient", *clusters]].copy()
    for c in clusters:
        out[c] = [None if pd.isna(v) else _category(v) for v in out[c]]
    return out


def missing_clusters(clinical: pd.DataFrame, clusters: Sequence[str]) -> dict[str, Any]:
    """Per cluster variable: patients with a value, without one, and which; patients with none at all."""
    per_cluster = {}
    for c in clusters:
        absent = clinical.loc[clinical[c].isna(), "patient_id"].tolist()
        per_cluster[c] = {"n_with_value": int(clinical[c].notna().sum()), "n_missing": len(absent), "missing": absent}
    none = clinical.loc[clinical[list(clusters)].isna().all(axis=1), "patient_id"].tolist()
    return {"per_cluster": per_cluster, "patients_without_any_cluster": none}


def _test_row(values: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    table, categories, median = median_split_table(values, groups)
    return {
        "n": len(values),
        "n_categories": len(categories),
        "categories": "/".join(categories),
        "group_sizes": "/".join(str(int(n)) for n in table.sum(axis=0)),
        "high_counts": "/".join(str(int(n)) for n in table[0]),
        "median": median,
        "fisher_p": fisher_median_split(values, groups),
        "kruskal_p": kruskal_wallis(values, groups),
    }


def association_tables(
    features: pd.DataFrame, clinical: pd.DataFrame, clusters: Sequence[str], *, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tests and AUCs of every feature against every cluster variable, per mask source.

    Args:
        features: :func:`~gliomaseg.radiogenomics.extract.extract_features` output.
        clinical: :func:`clinical_table` output.
        clusters: the cluster columns to test.
        n_boot: bootstrap resamples of the AUC CIs.
        seed: seed of the bootstrap.

    Returns:
        ``(associations, auc)``. ``associations`` has ``fisher_p`` with ``fisher_p_bonferroni``
        and ``kruskal_p`` with ``kruskal_p_holm``, corrected within each ``(masks, family)`` whose
        size is ``n_tests``; ``paper`` holds the paper's finding for that pair, if any.
    """
    rows, aucs = [], []
    joined = features.merge(clinical, on="patient_id", how="left")
    for masks, part in joined.groupby("masks", sort=True):
        for feat in FEATURES:
            for c in clusters:
                sub = part[part[feat.name].notna() & part[c].notna()]
                base = {"masks": masks, "family": "paper" if feat.paper else "descriptive", "feature": feat.name}
                base["cluster"] = c
                values, groups = sub[feat.name].to_numpy(float), sub[c].to_numpy(str)
                n_no_cluster = int((part[feat.name].notna() & part[c].isna()).sum())
                rows.append({**base, **_test_row(values, groups), "n_without_cluster": n_no_cluster})
                for cat in sorted(set(groups.tolist())):
                    auc, lo, hi = auc_with_ci(values, groups == cat, n_boot=n_boot, seed=seed)
                    n_pos = int(np.sum(groups == cat))
                    counts = {"category": cat, "n_pos": n_pos, "n_neg": len(values) - n_pos}
                    aucs.append({**base, **counts, "auc": auc, "ci_low": lo, "ci_high": hi})
    assoc = pd.DataFrame(rows)
    if assoc.empty:
        return assoc, pd.DataFrame(aucs)
    for _, idx in assoc.groupby(["masks", "family"]).groups.items():
        assoc.loc[idx, "fisher_p_bonferroni"] = correct(assoc.loc[idx, "fisher_p"].to_numpy(), "bonferroni")
        assoc.loc[idx, "kruskal_p_holm"] = correct(assoc.loc[idx, "kruskal_p"].to_numpy(), "holm")
        assoc.loc[idx, "n_tests"] = int(assoc.loc[idx, "fisher_p"].notna().sum())
    assoc["n_tests"] = assoc["n_tests"].astype(int)
    assoc["paper"] = [PAPER_FINDINGS.get((f, c), "") for f, c in zip(assoc["feature"], assoc["cluster"])]
    return assoc, pd.DataFrame(aucs)


def agreement_table(features: pd.DataFrame) -> pd.DataFrame:
    """Agreement of predicted-mask with truth-mask features, one row per feature (empty if one is absent)."""
    if set(features["masks"]) != {"truth", "predicted"}:
        return pd.DataFrame()
    wide = features.pivot(index="patient_id", columns="masks", values=[f.name for f in FEATURES])
    rows = []
    for feat in FEATURES:
        stats_ = agreement(wide[(feat.name, "truth")].to_numpy(), wide[(feat.name, "predicted")].to_numpy())
        rows.append({"feature": feat.name, "unit": feat.unit, **asdict(stats_)})
    return pd.DataFrame(rows)
