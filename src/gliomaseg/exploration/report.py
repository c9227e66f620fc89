"""``explore.md`` and ``explore.html`` of :func:`gliomaseg.exploration.explore.explore_dataset`.

Both are rendered from one list of sections (title, text, table), so they always say the same.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.evaluation.markdown import md_table
from gliomaseg.exploration.scan import ExploreResult, data_csv_columns, is_categorical
from gliomaseg.utils import atomic_write_text

__all__ = ["data_csv_table", "write_reports"]


@dataclass
class _Section:
    title: str
    text: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


def data_csv_table(patients: pd.DataFrame) -> pd.DataFrame:
    """One row per ``data.csv`` column: patients with a value, missing, and the counts per value (or a range)."""
    rows = []
    for column in data_csv_columns(patients):
        values = patients[column]
        present = values.dropna()
        if is_categorical(values):
            counts = present.astype(str).str.replace(r"\.0$", "", regex=True).value_counts().sort_index()
            summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
        else:
            x = pd.to_numeric(present, errors="coerce").dropna()
            summary = f"min {x.min():g}, median {x.median():g}, max {x.max():g}" if len(x) else "-"
        rows.append(
            {"column": column, "patients": len(present), "missing": int(values.isna().sum()), "values": summary}
        )
    return pd.DataFrame(rows, columns=["column", "patients", "missing", "values"])


def _quantiles(values: pd.Series, digits: int) -> list[Any]:
    v = values.dropna()
    if v.empty:
        return [0, "-", "-", "-", "-"]
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return [
        len(v),
        f"{med:.{digits}f}",
        f"{q1:.{digits}f}-{q3:.{digits}f}",
        f"{v.min():.{digits}f}",
        f"{v.max():.{digits}f}",
    ]


def _sections(result: ExploreResult) -> list[_Section]:
    slices, patients = result.slices, result.patients
    per_site = patients.groupby("site").agg(
        patients=("patient_id", "size"),
        slices=("slices", "sum"),
        median_slices=("slices", "median"),
        tumour=("tumour_slices", "sum"),
        no_pre=("has_pre", lambda s: int((~s).sum())),
        no_post=("has_post", lambda s: int((~s).sum())),
    )
    site_rows = [
        [r.Index, int(r.patients), int(r.slices), f"{r.median_slices:g}"]
        + [f"{int(r.tumour)} ({100 * r.tumour / r.slices:.1f}%)", int(r.no_pre), int(r.no_post)]
        for r in per_site.itertuples()
    ]
    tumour = slices[slices["has_tumour"]]
    with_tumour = patients[patients["tumour_voxels"] > 0]
    size_rows = [
        ["tumour pixels per tumour slice", *_quantiles(tumour["tumour_pixels"], 0)],
        [
            "% of the head, per tumour slice",
            *_quantiles(100 * tumour["tumour_pixels"] / tumour["head_pixels"].clip(lower=1), 2),
        ],
        ["tumour voxels per patient", *_quantiles(with_tumour["tumour_voxels"], 0)],
        ["% of the head volume, per patient", *_quantiles(100 * with_tumour["tumour_head_share"], 2)],
        ["tumour centre position (0-1)", *_quantiles(with_tumour["tumour_position"], 2)],
    ]
    missing = patients[~patients["has_pre"] | ~patients["has_post"]]
    sections = [
        _Section("Summary", text=list(result.headline)),
        _Section(
            "Sites",
            text=["Site: the TCGA institution code in the folder name (TCGA_<site>_...)."],
            header=[
                "site",
                "patients",
                "slices",
                "median slices / patient",
                "slices with tumour",
                "no pre-contrast",
                "no post-contrast",
            ],
            rows=site_rows,
        ),
        _Section(
            "Tumour size and position",
            text=[
                "Head: FLAIR above the patient's Otsu threshold, holes filled (the slices are not skull-stripped). "
                "Position: 0 = the first slice of the volume, 1 = the last."
            ],
            header=["quantity", "n", "median", "IQR", "min", "max"],
            rows=size_rows,
        ),
        _Section(
            "Missing sequences",
            text=["A channel identical to FLAIR on every slice of a patient counts as missing (the dataset's filler)."],
            header=["patient", "site", "sequences present"],
            rows=[[r.patient_id, r.site, r.sequences] for r in missing.itertuples()],
        ),
    ]
    table = data_csv_table(patients)
    if len(table):
        sections.append(
            _Section(
                "Clinical and genomic data (data.csv)",
                text=["Counts of patients per value (codes as in data.csv); NA: no value or no row for the patient."],
                header=list(table.columns),
                rows=table.to_numpy().tolist(),
            )
        )
    return sections


def _markdown(result: ExploreResult, sections: list[_Section]) -> str:
    lines = ["# Dataset exploration", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [f"- {t}" if s.title == "Summary" else t for t in s.text]
        if s.header:
            lines += ["", md_table(s.header, s.rows) if s.rows else "(none)"]
        lines.append("")
    lines += ["## Figures", ""]
    lines += [f"![{caption}]({path.relative_to(result.out).as_posix()})\n" for caption, path in result.figures]
    return "\n".join(lines)


def _html(sections: list[_Section], result: ExploreResult) -> str:
    from gliomaseg.evaluation.html import figure, html_table, page

    parts = ["<h1>Dataset exploration</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        tag = "li" if s.title == "Summary" else "p"
        body = "".join(f"<{tag}>{html.escape(t)}</{tag}>" for t in s.text)
        parts.append(f"<ul>{body}</ul>" if tag == "li" else body)
        if s.header:
            parts.append("<div class='scroll'>" + html_table(s.header, s.rows, sortable=True) + "</div>")
    parts.append("<h2>Figures</h2>")
    parts += [figure(path, caption) for caption, path in result.figures]
    return page("gliomaseg dataset exploration", parts)


def write_reports(result: ExploreResult) -> None:
    """Write ``explore.md`` (figures linked) and the self-contained ``explore.html`` (figures embedded)."""
    sections = _sections(result)
    atomic_write_text(result.out / "explore.md", _markdown(result, sections))
    atomic_write_text(result.out / "explore.html", _html(sections, result))
