"""Outputs of the radiogenomics analysis: CSV tables, ``summary.json``, box plots, Markdown and HTML.

``radiogenomics.md`` holds tables ready for a paper, with the findings of Buda et al. 2019 beside
ours; ``report.html`` shows the same tables with the box plots, built with the shared HTML blocks
of :mod:`gliomaseg.evaluation.html`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.evaluation.markdown import md_table
from gliomaseg.radiogenomics.shape import FEATURES
from gliomaseg.utils import atomic_write, atomic_write_text

__all__ = ["format_p", "plot_feature_boxes", "write_outputs"]

_LABEL = {f.name: f.label for f in FEATURES}
_UNIT = {f.name: f.unit for f in FEATURES}
_ASSOC_HEADER = ["feature", "cluster", "n", "Fisher p", "Bonferroni p", "Kruskal-Wallis p", "Holm p", "paper (n=110)"]


def format_p(p: float) -> str:
    """A p-value for a table: 3 decimals, or 2 significant digits below 0.001; ``–`` for NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def _assoc_rows(assoc: pd.DataFrame) -> list[list[str]]:
    return [
        [
            _LABEL[r.feature],
            r.cluster,
            r.n,
            format_p(r.fisher_p),
            format_p(r.fisher_p_bonferroni),
            format_p(r.kruskal_p),
            format_p(r.kruskal_p_holm),
            r.paper or "",
        ]
        for r in assoc.itertuples()
    ]


def _auc_rows(auc: pd.DataFrame) -> list[list[str]]:
    return [
        [_LABEL[r.feature], r.cluster, r.category, f"{r.n_pos} / {r.n_neg}", _auc_text(r.auc, r.ci_low, r.ci_high)]
        for r in auc.itertuples()
    ]


def _auc_text(auc: float, lo: float, hi: float) -> str:
    return "–" if math.isnan(auc) else f"{auc:.2f} ({lo:.2f}-{hi:.2f})"


def _agreement_rows(agree: pd.DataFrame) -> list[list[str]]:
    return [
        [
            _LABEL[r.feature],
            r.unit,
            r.n,
            _num(r.pearson),
            _num(r.spearman),
            _num(r.bias),
            _num(r.loa_low),
            _num(r.loa_high),
        ]
        for r in agree.itertuples()
    ]


_AUC_HEADER = ["feature", "cluster", "category", "n in / rest", "AUC (95% CI)"]
_AGREE_HEADER = ["feature", "unit", "n", "Pearson r", "Spearman rho", "bias (pred - truth)", "LoA low", "LoA high"]


def _missing_rows(summary: dict[str, Any], features: pd.DataFrame) -> list[list[str]]:
    rows = []
    for c, m in summary["missing_clusters"]["per_cluster"].items():
        sizes = features.drop_duplicates("patient_id")[c].value_counts().sort_index()
        rows.append([c, m["n_with_value"], m["n_missing"], ", ".join(f"{k}: {v}" for k, v in sizes.items())])
    return rows


def _sections(summary: dict[str, Any], features: pd.DataFrame, assoc: pd.DataFrame, auc: pd.DataFrame) -> list:
    """``(title, text, header, rows)`` of every section, shared by the Markdown and HTML reports."""
    s = summary
    out = [
        (
            "Patients and missing cluster values",
            f"{s['data']['n_patients']} patients ({s['data']['n_slices']} slices). Patients without a value of a "
            "cluster variable are left out of that variable's tests only. Patients without any cluster value: "
            f"{', '.join(s['missing_clusters']['patients_without_any_cluster']) or 'none'}.",
            ["cluster", "patients with value", "missing", "patients per category"],
            _missing_rows(s, features),
        )
    ]
    for masks, part in assoc.groupby("masks", sort=False):
        for family, fam in part.groupby("family", sort=False):
            n_tests = int(fam["n_tests"].iloc[0])
            title = f"{'Paper' if family == 'paper' else 'Descriptive'} features vs clusters ({masks} masks)"
            text = (
                f"Fisher's exact test of the feature split at its median (the paper's method; 2 x k tables exact), "
                f"Bonferroni over the {n_tests} tests of this table; Kruskal-Wallis on the raw feature, Holm over "
                "the same tests. The paper's column is its result on 110 patients (automatic masks)."
            )
            out.append((title, text, _ASSOC_HEADER, _assoc_rows(fam)))
        paper_auc = auc[(auc["masks"] == masks) & (auc["family"] == "paper")]
        text = "Each category against all others; AUC < 0.5: lower values in that category. 95% bootstrap CI."
        out.append((f"ROC AUC of the paper's features ({masks} masks)", text, _AUC_HEADER, _auc_rows(paper_auc)))
    return out


def write_markdown(path: Path, summary: dict[str, Any], sections: list, agree: pd.DataFrame) -> Path:
    """``radiogenomics.md``: the settings, then every section as a Markdown table."""
    s = summary
    lines = [
        "# Radiogenomics: tumour shape features vs genomic clusters",
        "",
        f"Masks: **{s['masks']}**; data: {s['data']['index']}; created {s['created']} in {s['seconds']} s "
        f"(gliomaseg {s['package_version']}). Voxel spacing {s['spacing']} (kaggle_3m has none: the paper's "
        "three features are scale-free; volume and surface area are in voxels).",
    ]
    pred = s["prediction"]
    if pred:
        lines.append(f"\nPredicted masks: {pred['kind']}; {json.dumps({k: v for k, v in pred.items() if k != 'kind'})}")
        lines.append(f"\nPatients without a prediction: {', '.join(s['patients_without_prediction']) or 'none'}.")
    for masks, empty in s["patients_with_empty_mask"].items():
        lines.append(f"\nPatients with an empty {masks} mask (no features): {', '.join(empty) or 'none'}.")
    for title, text, header, rows in sections:
        lines += ["", f"## {title}", "", text, "", md_table(header, rows)]
    if not agree.empty:
        lines += [
            "",
            "## Agreement of predicted-mask with truth-mask features",
            "",
            "Bland-Altman: bias = mean(pred - truth), limits of agreement = bias -/+ 1.96 SD.",
            "",
            md_table(_AGREE_HEADER, _agreement_rows(agree)),
        ]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def plot_feature_boxes(path: Path, features: pd.DataFrame, feature: str, clusters: Sequence[str]) -> Path:
    """Box plots of one feature per category of every cluster variable, with the patients as dots."""
    import matplotlib

    matplotlib.use("Agg")  # figures are files, there is no display
    import matplotlib.pyplot as plt

    n = len(clusters)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    # Fixed margins: automatic layouts measure every label and take 10x longer than the drawing.
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.88, wspace=0.35, hspace=0.45)
    for ax, c in zip(axes.ravel(), clusters):
        sub = features[features[feature].notna() & features[c].notna()]
        cats = sorted(sub[c].unique())
        data = [sub.loc[sub[c] == k, feature].to_numpy() for k in cats]
        if cats:
            ax.boxplot(data, showfliers=False)
            for i, d in enumerate(data, start=1):
                ax.plot([i] * len(d), d, "o", ms=3, alpha=0.6, color="tab:blue")
            ax.set_xticks(range(1, len(cats) + 1), cats)
        ax.set_title(c, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"{_LABEL[feature]} ({_UNIT[feature]})", fontsize=10)
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    finally:
        plt.close(fig)


def write_outputs(
    out: Path,
    summary: dict[str, Any],
    features: pd.DataFrame,
    assoc: pd.DataFrame,
    auc: pd.DataFrame,
    agree: pd.DataFrame,
    *,
    figures: bool = True,
) -> None:
    """Write every output file of :func:`gliomaseg.radiogenomics.analysis.run_radiogenomics` into ``out``."""
    from gliomaseg.evaluation.html import figure, html_table, page

    for name, df in (("features", features), ("associations", assoc), ("auc", auc), ("agreement", agree)):
        if not df.empty:
            atomic_write(out / f"{name}.csv", lambda p, df=df: df.to_csv(p, index=False))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n")
    sections = _sections(summary, features, assoc, auc)
    write_markdown(out / "radiogenomics.md", summary, sections, agree)
    plots = []
    if figures:
        for masks, part in features.groupby("masks", sort=True):
            for f in FEATURES:
                path = plot_feature_boxes(
                    out / "figures" / f"box_{masks}_{f.name}.png", part, f.name, summary["clusters"]
                )
                plots.append((f"{_LABEL[f.name]} per cluster ({masks} masks)", path))
    parts = ["<h1>Radiogenomics: tumour shape features vs genomic clusters</h1>"]
    parts.append(
        html_table(
            ["setting", "value"],
            [[k, json.dumps(summary[k])] for k in ("masks", "data", "prediction", "spacing", "tests")],
        )
    )
    for title, text, header, rows in sections:
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            f"<p>{html.escape(text)}</p>",
            html_table(header, rows, sortable=True),
        ]
    if not agree.empty:
        parts += [
            "<h2>Agreement of predicted-mask with truth-mask features</h2>",
            html_table(_AGREE_HEADER, _agreement_rows(agree)),
        ]
    if plots:
        parts.append("<h2>Box plots</h2>")
        parts += [figure(p, caption) for caption, p in plots]
    text = page("gliomaseg radiogenomics", parts)
    atomic_write(out / "report.html", lambda p: p.write_text(text, encoding="utf-8"))
