"""Self-contained HTML reports: building blocks shared by every report, and the evaluation report.

Images are embedded as base64 data URIs, so one ``.html`` file can be mailed or archived. The
style sheet and the table-sorting script are package data (``assets/report.css``,
``assets/sortable.js``), read once.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.utils import atomic_write

__all__ = ["data_uri", "figure", "fmt", "html_table", "page", "write_report"]


@cache
def _asset(name: str) -> str:
    return resources.files("gliomaseg.evaluation").joinpath("assets", name).read_text(encoding="utf-8")


def page(title: str, parts: Sequence[str]) -> str:
    """A whole HTML document: ``title``, the shared style sheet, ``parts`` in order, the sorting script.

    Args:
        title: the document title (escaped here).
        parts: HTML fragments of the body, already escaped.

    Returns:
        The document text.
    """
    return "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title>",
            f"<style>{_asset('report.css')}</style></head><body>",
            *parts,
            f"<script>{_asset('sortable.js')}</script></body></html>",
        ]
    )


def figure(path: str | Path, caption: str) -> str:
    """An ``<figure>`` with the image at ``path`` embedded and its caption."""
    return (
        f"<figure><img alt='{html.escape(caption)}' src='{data_uri(Path(path))}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False) -> str:
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            key = f' data-v="{float(v)}"' if num and not (isinstance(v, float) and math.isnan(v)) else ""
            cells.append(f"<td{key}>{fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary_table(block: Mapping[str, Any]) -> str:
    rows = []
    for metric, s in block.get("metrics", {}).items():
        rows.append(
            [
                metric,
                s.get("n"),
                s.get("mean"),
                s.get("median"),
                s.get("std"),
                s.get("min"),
                s.get("p10"),
                s.get("ci_low"),
                s.get("ci_high"),
            ]
        )
    header = ["metric", "n", "mean", "median", "std", "min", "10th pct", "95% CI low", "95% CI high"]
    return html_table(header, rows)


#: Per-patient columns shown in the HTML table, in order (those present are used).
_PATIENT_COLUMNS = (
    "patient_id",
    "n_slices",
    "n_tumour_slices",
    "case",
    "dice",
    "iou",
    "precision",
    "sensitivity",
    "hd95",
    "truth_pixels",
    "pred_pixels",
    "n_false_positive_slices",
    "n_missed_tumour_slices",
    "slice_dice_mean",
    "quality_score",
    "quality_flag",
)


def _settings_table(s: Mapping[str, Any]) -> str:
    ckpt, split, data = s.get("checkpoint", {}), s.get("split", {}), s.get("data", {})
    settings = [
        ("checkpoint", ckpt.get("path")),
        ("model", json.dumps(ckpt.get("model"))),
        ("checkpoint epoch", ckpt.get("epoch")),
        ("preprocessing", json.dumps(s.get("preprocess"))),
        ("post-processing", json.dumps(s.get("postprocess"))),
        ("split", f"{split.get('name')} (fold {split.get('fold')})"),
        (
            "split id (evaluation / checkpoint)",
            f"{split.get('split_id')} / {split.get('checkpoint_split_id')}",
        ),
        ("index", data.get("index")),
        ("resolution of the metrics", data.get("resolution")),
        ("patients / slices", f"{s.get('n_patients')} / {s.get('n_slices')}"),
        ("created", s.get("created")),
        ("time (s)", json.dumps(s.get("seconds"))),
    ]
    shown = [[k, "–" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)] for k, v in settings]
    return html_table(["setting", "value"], shown)


def _gif_section(gifs: Sequence[tuple[str, Path]], folder: Path, max_gif_bytes: int) -> str:
    """The animations, embedded while their total size stays under ``max_gif_bytes``, then linked."""
    parts = ["<h2>Slice-by-slice animations</h2><div class='gifs'>"]
    used = 0
    for caption, gif in gifs:
        gif = Path(gif)
        size = gif.stat().st_size
        if used + size <= max_gif_bytes:
            used += size
            src = data_uri(gif)
        else:
            try:
                src = html.escape(gif.relative_to(folder).as_posix())
            except ValueError:
                src = html.escape(gif.as_uri())
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='{src}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return "".join(parts)


def _ensemble_section(ens: Mapping[str, Any]) -> str:
    """The ensemble against each member on the same patients."""
    rows = [[m["checkpoint"], m["dice_mean"], m["dice_min"]] for m in ens["members"]]
    rows.append(["ensemble (averaged probabilities)", ens["ensemble_dice_mean"], ens["ensemble_dice_min"]])
    return (
        "<h2>Ensemble vs its members</h2><p>Every member segmented the same "
        f"{ens['n_patients']} patients with tumour; each member's mask went through the same post-processing. "
        f"Gain of the ensemble over the mean member: {fmt(ens['gain_over_mean_member'])}, over the best member: "
        f"{fmt(ens['gain_over_best_member'])}; patients improved over the members' average: "
        f"{ens['patients_improved_over_member_average']}.</p>"
        + html_table(["model", "mean per-patient Dice", "worst patient"], rows)
    )


def _shift_section(shifts: Mapping[str, Any]) -> str:
    """The shift table: in-domain first, then each shift's per-patient Dice and its change."""
    base = shifts.get("in_domain", {})
    rows = [
        [
            "in-domain",
            "",
            base.get("n"),
            base.get("mean"),
            base.get("ci_low"),
            base.get("ci_high"),
            base.get("min"),
            0.0,
            "",
            "",
        ]
    ]
    for name, r in shifts.get("per_shift", {}).items():
        ci = (r.get("ci_low"), r.get("ci_high"))
        flagged = r.get("quality_flagged")
        rows.append(
            [
                name,
                r.get("description"),
                r.get("n"),
                r.get("mean"),
                *ci,
                r.get("min"),
                r.get("drop"),
                r.get("n_worse"),
                flagged,
            ]
        )
    header = [
        "shift",
        "what",
        "n",
        "mean Dice",
        "95% CI low",
        "95% CI high",
        "worst",
        "change vs in-domain",
        "patients worse",
        "flagged 'check'",
    ]
    return (
        "<h2>Distribution shifts</h2><p>The same patients under named, seeded shifts of their volumes "
        f"(seed {shifts.get('seed')}; <code>shifts.csv</code> has every patient). Change: the shift's mean "
        "per-patient Dice minus the in-domain mean over the same patients.</p>" + html_table(header, rows)
    )


def write_report(
    path: str | Path,
    summary: Mapping[str, Any],
    per_patient: pd.DataFrame,
    *,
    figures: Sequence[tuple[str, Path]] = (),
    gifs: Sequence[tuple[str, Path]] = (),
    max_gif_bytes: int = 12_000_000,
) -> Path:
    """Write one self-contained HTML report (images embedded as base64 data URIs).

    Args:
        path: the ``.html`` file.
        summary: the evaluation summary (as written to ``summary.json``).
        per_patient: one row per patient.
        figures: ``(caption, png_path)`` pairs, shown in order.
        gifs: ``(caption, gif_path)`` pairs, most important first; embedded while their total
            size stays under ``max_gif_bytes``, linked by relative path after that.
        max_gif_bytes: budget for embedded GIFs (keeps the report small for large splits).

    Returns:
        ``path``.
    """
    path = Path(path)
    s = summary
    parts = ["<h1>gliomaseg evaluation report</h1>"]
    for w in s.get("warnings", []):
        parts.append(f"<div class='warn'>⚠ {html.escape(w)}</div>")

    parts.append("<h2>Settings</h2>")
    parts.append(_settings_table(s))

    vol, sl = s.get("volume", {}), s.get("slice", {})
    parts.append("<h2>Per-patient volume metrics</h2>")
    parts.append(
        "<p>Metrics of each patient's whole predicted volume against its ground truth, at the data's own "
        "resolution; overlap metrics over patients with tumour, 95% CI by bootstrap over patients. "
        "HD95 in pixels (3D, one slice = one pixel).</p>"
    )
    parts.append(_summary_table(vol))
    if s.get("global_dice") is not None:
        parts.append(f"<p>Global Dice (all voxels of all patients pooled): {fmt(s.get('global_dice'))}</p>")
    parts.append("<h2>Per-slice metrics (tumour slices)</h2>")
    parts.append(
        "<p>Overlap metrics over slices with tumour; accuracy and specificity over all slices. Slices of one "
        "patient are correlated, so these intervals are narrower than they should be.</p>"
    )
    parts.append(_summary_table(sl))

    if s.get("ensemble"):
        parts.append(_ensemble_section(s["ensemble"]))
    if s.get("shifts"):
        parts.append(_shift_section(s["shifts"]))

    empty = s.get("empty_cases", {})
    parts.append("<h2>Empty cases</h2>")
    parts.append(html_table(["count", "value"], [[k, v] for k, v in empty.items()]))

    parts.append("<h2>Patients</h2><p>Click a column header to sort.</p>")
    cols = [c for c in _PATIENT_COLUMNS if c in per_patient.columns]
    rows = [[r[c] for c in cols] for r in per_patient[cols].to_dict("records")]
    parts.append("<div class='scroll'>" + html_table(cols, rows, sortable=True) + "</div>")

    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, fig in figures:
            parts.append(figure(fig, caption))
    if gifs:
        parts.append(_gif_section(gifs, path.parent, max_gif_bytes))
    text = page(f"gliomaseg evaluation: {s.get('split', {}).get('name', '')}", parts)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
