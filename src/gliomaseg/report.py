"""Evaluation figures (matplotlib, Agg backend), per-patient GIFs and one self-contained HTML report.

Colours everywhere: the FLAIR channel (channel 1 of a kaggle_3m slice) in grey, the ground truth
outlined in green, the prediction outlined in red (yellow where both outlines coincide).
Figures are written atomically; nothing is printed.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, there is no display.

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import ndimage  # noqa: E402

from gliomaseg.utils import atomic_write  # noqa: E402

__all__ = [
    "FLAIR",
    "outline",
    "overlay_frames",
    "plot_dice_distribution",
    "plot_learning_curves",
    "plot_patient_overlays",
    "save_gif",
    "select_slices",
    "write_report",
]

#: Channel of a kaggle_3m slice that shows the tumour best (pre-contrast, FLAIR, post-contrast).
FLAIR = 1
_TRUTH_RGB = np.array([0, 255, 0], dtype=np.uint8)
_PRED_RGB = np.array([255, 0, 0], dtype=np.uint8)
_BOTH_RGB = np.array([255, 255, 0], dtype=np.uint8)
_TRUTH_COLOUR, _PRED_COLOUR = "lime", "red"
_DPI = 100


def _check_stack(images: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be S x H x W x 3 uint8, got shape {images.shape} dtype {images.dtype}")
    if truth.shape != images.shape[:3] or pred.shape != images.shape[:3]:
        raise ValueError(f"truth {truth.shape} and pred {pred.shape} must both be S x H x W = {images.shape[:3]}")


def outline(mask: np.ndarray) -> np.ndarray:
    """In-plane outline of a mask: foreground pixels with a 4-neighbour in the background.

    Args:
        mask: ``H x W`` or ``S x H x W`` (each slice outlined on its own); bool or 0/1.

    Returns:
        Bool array of the same shape.
    """
    m = np.asarray(mask).astype(bool)
    cross = ndimage.generate_binary_structure(2, 1)
    structure = cross if m.ndim == 2 else cross[None]
    # border_value=0 makes a mask touching the image edge get an outline there too.
    return m & ~ndimage.binary_erosion(m, structure=structure, border_value=0)


def _block_reduce(x: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Downscale axes 1 and 2 of ``S x H x W (x C)`` by an integer factor (mean or any)."""
    if factor == 1:
        return x
    s, h, w = x.shape[:3]
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    pad = [(0, 0), (0, hp - h), (0, wp - w)] + [(0, 0)] * (x.ndim - 3)
    x = np.pad(x, pad, mode="edge" if how == "mean" else "constant")
    shaped = x.reshape(s, hp // factor, factor, wp // factor, factor, *x.shape[3:])
    if how == "any":
        return shaped.any(axis=(2, 4))
    return shaped.mean(axis=(2, 4))


def overlay_frames(
    images: np.ndarray, truth: np.ndarray, pred: np.ndarray, *, max_size: int | None = 128
) -> np.ndarray:
    """RGB frames: FLAIR in grey with green truth and red prediction outlines.

    Outlines are drawn at full resolution and then shrunk with a logical "any", so they stay
    visible (one pixel wide) after downscaling.

    Args:
        images: ``S x H x W x 3`` uint8 slices.
        truth: ``S x H x W`` ground-truth mask (bool or 0/1).
        pred: ``S x H x W`` predicted mask.
        max_size: downscale by an integer factor until the longer side is at most this; ``None``
            keeps the input size.

    Returns:
        ``S x h x w x 3`` uint8.

    Raises:
        ValueError: mismatched shapes or non-uint8 images.
    """
    truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    _check_stack(images, truth, pred)
    factor = 1 if max_size is None else max(1, math.ceil(max(images.shape[1:3]) / max_size))
    grey = _block_reduce(images[..., FLAIR].astype(np.float32), factor, "mean")
    frames = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    t = _block_reduce(outline(truth), factor, "any")
    p = _block_reduce(outline(pred), factor, "any")
    frames[t] = _TRUTH_RGB
    frames[p] = _PRED_RGB
    frames[t & p] = _BOTH_RGB
    return frames


def save_gif(
    path: str | Path,
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    max_size: int = 128,
    fps: float = 6.0,
) -> Path:
    """Write an animated GIF through a patient's slices (see :func:`overlay_frames`).

    Args:
        path: the ``.gif`` file.
        images: ``S x H x W x 3`` uint8 slices in order.
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        max_size: longest side of the frames in pixels (keeps the file small).
        fps: frames per second.

    Returns:
        ``path``.
    """
    import imageio.v3 as iio

    frames = overlay_frames(images, truth, pred, max_size=max_size)
    duration = int(round(1000 / fps))
    return atomic_write(path, lambda p: iio.imwrite(p, frames, extension=".gif", duration=duration, loop=0))


def select_slices(truth: np.ndarray, pred: np.ndarray, n: int = 6) -> list[int]:
    """Slices to show for a patient: spread over the tumour, then most predicted, then evenly spaced.

    With more tumour slices than ``n``, the picks are evenly spaced through the tumour's slices
    (centred, so not its thin ends) and always include the slice with the most tumour;
    adjacent slices would mostly repeat each other.

    Args:
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        n: how many slices (fewer if the patient has fewer).

    Returns:
        Sorted slice positions (0-based along S).
    """
    s = truth.shape[0]
    n = min(n, s)
    t = np.asarray(truth).reshape(s, -1).sum(axis=1)
    p = np.asarray(pred).reshape(s, -1).sum(axis=1)
    tumour = np.flatnonzero(t > 0)
    if len(tumour) > n:
        picks = tumour[((np.arange(n) + 0.5) * len(tumour) / n).astype(int)]
        biggest = int(np.argmax(t))
        if biggest not in picks:
            picks[np.argmin(np.abs(picks - biggest))] = biggest
        chosen = [int(i) for i in picks]
    else:
        chosen = [int(i) for i in tumour]
    # False positives on tumour-free slices are worth showing too.
    for i in np.argsort(-p, kind="stable"):
        if len(chosen) >= n or p[i] == 0:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    for i in np.linspace(0, s - 1, n).round().astype(int):
        if len(chosen) >= n:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return sorted(chosen)


def _save_figure(fig: plt.Figure, path: str | Path) -> Path:
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=_DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _legend_handles() -> list[Line2D]:
    return [
        Line2D([0], [0], color=_TRUTH_COLOUR, lw=2.4, label="ground truth"),
        Line2D([0], [0], color=_PRED_COLOUR, lw=1.1, label="prediction"),
    ]


def plot_patient_overlays(
    path: str | Path,
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    title: str,
    slice_numbers: Sequence[int] | None = None,
    n: int = 6,
) -> Path:
    """A montage of one patient's most informative slices (see :func:`select_slices`).

    Args:
        path: the ``.png`` file.
        images: ``S x H x W x 3`` uint8 slices.
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        title: figure title (e.g. patient id and volume Dice).
        slice_numbers: the dataset's slice numbers for the panel titles (default 1..S).
        n: number of slices shown.

    Returns:
        ``path``.
    """
    truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    _check_stack(images, truth, pred)
    numbers = list(slice_numbers) if slice_numbers is not None else list(range(1, len(images) + 1))
    picks = select_slices(truth, pred, n)
    cols = min(len(picks), 3)
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows + 0.7), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        ax.imshow(images[i, ..., FLAIR], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if truth[i].any():
            # Thicker truth under a thinner prediction keeps both visible where they coincide.
            ax.contour(truth[i], levels=[0.5], colors=_TRUTH_COLOUR, linewidths=2.4)
        if pred[i].any():
            ax.contour(pred[i], levels=[0.5], colors=_PRED_COLOUR, linewidths=1.1)
        inter = int(np.count_nonzero(truth[i] & pred[i]))
        total = int(truth[i].sum() + pred[i].sum())
        dice = f"Dice {2 * inter / total:.2f}" if truth[i].any() else ("FP" if pred[i].any() else "empty")
        ax.set_title(f"slice {numbers[i]}: {dice}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return _save_figure(fig, path)


def plot_dice_distribution(path: str | Path, dice: Sequence[float] | np.ndarray | pd.Series) -> Path:
    """Histogram and box/strip plot of per-patient volume Dice (NaN, i.e. no tumour, left out).

    Args:
        path: the ``.png`` file.
        dice: one value per patient.

    Returns:
        ``path``.
    """
    values = np.asarray(dice, dtype=np.float64)
    n_nan = int(np.isnan(values).sum())
    values = values[~np.isnan(values)]
    fig, (ax_h, ax_b) = plt.subplots(
        1, 2, figsize=(8.5, 3.4), gridspec_kw={"width_ratios": [2.2, 1]}, constrained_layout=True
    )
    ax_h.hist(values, bins=np.linspace(0, 1, 21), color="#4477aa", edgecolor="white")
    ax_h.set_xlim(0, 1)
    ax_h.set_xlabel("volume Dice per patient")
    ax_h.set_ylabel("patients")
    ax_h.yaxis.set_major_locator(MaxNLocator(integer=True))
    if values.size:
        mean, median = float(values.mean()), float(np.median(values))
        ax_h.axvline(mean, color="black", lw=1.2, label=f"mean {mean:.3f}")
        ax_h.axvline(median, color="black", ls="--", lw=1.2, label=f"median {median:.3f}")
        ax_h.legend(fontsize=8, loc="upper left")
        ax_b.boxplot(values, widths=0.5, showfliers=False)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, values.size)
        ax_b.scatter(1 + jitter, values, s=14, color="#4477aa", alpha=0.8, zorder=3)
    ax_b.set_ylim(-0.02, 1.02)
    ax_b.set_xticks([1], [f"{values.size} patients"])
    ax_b.set_ylabel("volume Dice")
    note = f" ({n_nan} without tumour left out)" if n_nan else ""
    fig.suptitle(f"Per-patient Dice{note}", fontsize=11)
    return _save_figure(fig, path)


def plot_learning_curves(path: str | Path, log: pd.DataFrame, *, best_epoch: int | None = None) -> Path | None:
    """Train/val loss and validation per-patient Dice against epoch from the run's CSV log.

    Args:
        path: the ``.png`` file.
        log: the run's log, from :func:`gliomaseg.training.read_training_log`.
        best_epoch: epoch of the evaluated checkpoint, marked on the plot.

    Returns:
        ``path``, or ``None`` when the log has no per-epoch values.
    """
    if log.empty or "epoch" not in log.columns:
        return None

    def per_epoch(column: str) -> pd.Series | None:
        if column not in log.columns:
            return None
        s = log[["epoch", column]].dropna().groupby("epoch")[column].last()
        return s if len(s) else None

    series = {
        "train loss": per_epoch("train/loss_epoch"),
        "val loss": per_epoch("val/loss"),
        "val Dice (per patient)": per_epoch("val/dice_patient"),
    }
    if all(s is None for s in series.values()):
        return None
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for name, colour in (("train loss", "#4477aa"), ("val loss", "#ee6677")):
        s = series[name]
        if s is not None:
            ax_l.plot(s.index, s.to_numpy(), marker="o", ms=3, color=colour, label=name)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.legend(fontsize=8)
    dice = series["val Dice (per patient)"]
    if dice is not None:
        ax_d.plot(dice.index, dice.to_numpy(), marker="o", ms=3, color="#228833", label="val Dice (per patient)")
    if best_epoch is not None:
        for ax in (ax_l, ax_d):
            ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        ax_d.plot([], [], color="grey", ls="--", label=f"checkpoint (epoch {best_epoch})")
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("Dice")
    ax_d.set_ylim(0, 1)
    ax_d.legend(fontsize=8, loc="lower right")
    fig.suptitle("Learning curves (validation at the training resolution)", fontsize=11)
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# HTML


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False) -> str:
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            key = f' data-v="{float(v)}"' if num and not (isinstance(v, float) and math.isnan(v)) else ""
            cells.append(f"<td{key}>{_fmt(v)}</td>")
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
                s.get("ci_low"),
                s.get("ci_high"),
            ]
        )
    return _table(["metric", "n", "mean", "median", "std", "95% CI low", "95% CI high"], rows)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}table.sortable th:hover{background:#e0e0ff}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;margin:.5em 0}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img{max-width:100%}
.gifs{display:flex;flex-wrap:wrap;gap:1em}.gifs figure{margin:0}
.scroll{max-height:32em;overflow:auto}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,c){var x=a.cells[i],y=c.cells[i];
   var u=x.dataset.v,v=y.dataset.v;
   if(u!==undefined&&v!==undefined){return asc?u-v:v-u;}
   if(u===undefined&&v!==undefined){return 1;} if(v===undefined&&u!==undefined){return -1;}
   return asc?x.textContent.localeCompare(y.textContent):y.textContent.localeCompare(x.textContent);});
  rows.forEach(function(r){b.appendChild(r);});});});});
"""

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
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>gliomaseg evaluation: {html.escape(str(s.get('split', {}).get('name', '')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>gliomaseg evaluation report</h1>",
    ]
    for w in s.get("warnings", []):
        parts.append(f"<div class='warn'>⚠ {html.escape(w)}</div>")

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
    parts.append("<h2>Settings</h2>")
    shown = [[k, "–" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)] for k, v in settings]
    parts.append(_table(["setting", "value"], shown))

    vol, sl = s.get("volume", {}), s.get("slice", {})
    parts.append("<h2>Per-patient volume metrics</h2>")
    parts.append(
        "<p>Metrics of each patient's whole predicted volume against its ground truth, at the data's own "
        "resolution; overlap metrics over patients with tumour, 95% CI by bootstrap over patients. "
        "HD95 in pixels (3D, one slice = one pixel).</p>"
    )
    parts.append(_summary_table(vol))
    if s.get("global_dice") is not None:
        parts.append(f"<p>Global Dice (all voxels of all patients pooled): {_fmt(s.get('global_dice'))}</p>")
    parts.append("<h2>Per-slice metrics (tumour slices)</h2>")
    parts.append(
        "<p>Overlap metrics over slices with tumour; accuracy and specificity over all slices. Slices of one "
        "patient are correlated, so these intervals are narrower than they should be.</p>"
    )
    parts.append(_summary_table(sl))

    empty = s.get("empty_cases", {})
    parts.append("<h2>Empty cases</h2>")
    parts.append(_table(["count", "value"], [[k, v] for k, v in empty.items()]))

    parts.append("<h2>Patients</h2><p>Click a column header to sort.</p>")
    cols = [c for c in _PATIENT_COLUMNS if c in per_patient.columns]
    rows = [[r[c] for c in cols] for r in per_patient[cols].to_dict("records")]
    parts.append("<div class='scroll'>" + _table(cols, rows, sortable=True) + "</div>")

    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, fig in figures:
            parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='{_data_uri(Path(fig))}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    if gifs:
        parts.append("<h2>Slice-by-slice animations</h2><div class='gifs'>")
        used = 0
        for caption, gif in gifs:
            gif = Path(gif)
            size = gif.stat().st_size
            if used + size <= max_gif_bytes:
                used += size
                src = _data_uri(gif)
            else:
                try:
                    src = html.escape(gif.relative_to(path.parent).as_posix())
                except ValueError:
                    src = html.escape(gif.as_uri())
            parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='{src}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    text = "\n".join(parts)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
