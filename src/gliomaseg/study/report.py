"""A study's outputs: ``results.csv``, ``comparisons.csv``, ``per_patient.csv``, ``runs.csv``,
``results.md``, box/strip plots of per-patient scores, learning curves per run and ``report.html``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gliomaseg.study.folder import Study
from gliomaseg.study.markdown import (
    COMPARISON_HEADER,
    RESULTS_HEADER,
    comparison_rows,
    friedman_lines,
    methods_text,
    results_markdown,
    results_rows,
)
from gliomaseg.study.results import StudyResults, gather_results, summarise_results
from gliomaseg.utils import atomic_write, atomic_write_text

__all__ = ["CollectResult", "collect_study", "plot_scores"]


@dataclass(frozen=True)
class CollectResult:
    """What :func:`collect_study` wrote.

    Attributes:
        results: the tables and tests.
        files: every file written, ``results.md`` and ``report.html`` included.
    """

    results: StudyResults
    files: list[Path]


def plot_scores(path: Path, per_patient: pd.DataFrame, order: list[str], metric: str = "dice") -> Path:
    """Box plot with every patient's out-of-fold score as a dot, one column per configuration.

    Args:
        path: the ``.png`` file.
        per_patient: long table with ``config`` and ``metric``.
        order: configurations, left to right.
        metric: the column plotted.

    Returns:
        ``path``.
    """
    from gliomaseg.evaluation.figures import plt, save_figure

    values = [per_patient.loc[per_patient["config"] == c, metric].dropna().to_numpy() for c in order]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(order) + 1.5), 4.2), constrained_layout=True)
    filled = [v if v.size else np.array([np.nan]) for v in values]
    ax.boxplot(filled, widths=0.55, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=10, alpha=0.6, color="#4477aa", zorder=3)
        if v.size:
            ax.scatter([i], [v.mean()], marker="D", s=28, color="#ee6677", zorder=4)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=30, ha="right", fontsize=8)
    label = {"dice": "Dice", "iou": "IoU", "hd95": "HD95 (pixels)", "dice_shifted": "Dice under shifts"}[metric]
    ax.set_ylabel(f"out-of-fold {label} per patient")
    if metric != "hd95":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{label} per patient (box: quartiles; diamond: mean)", fontsize=10)
    return save_figure(fig, path)


def _learning_curves(results: StudyResults, fig_dir: Path) -> list[tuple[str, Path]]:
    from gliomaseg.evaluation.figures import plot_learning_curves
    from gliomaseg.training.logs import read_training_log

    study = results.study
    out = []
    for row in results.runs.to_dict("records"):
        run = f"{row['config']}__fold{row['fold']}"
        run_dir = study.runs_dir / run
        path = fig_dir / f"{run}.png"
        stale = not path.is_file() or path.stat().st_mtime < (run_dir / "result.json").stat().st_mtime
        if stale and plot_learning_curves(path, read_training_log(run_dir), best_epoch=row["checkpoint_epoch"]) is None:
            continue
        out.append(
            (
                f"{run}: learning curves (marked: the evaluated {row['checkpoint']}, epoch {row['checkpoint_epoch']})",
                path,
            )
        )
    return out


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def _html(results: StudyResults, score_figures: list[tuple[str, Path]], curves: list[tuple[str, Path]]) -> str:
    from gliomaseg.evaluation.html import figure, html_table, page

    cfg = results.study.config
    parts = [f"<h1>Study {html.escape(cfg.name)}</h1>"]
    parts.append(
        f"<p>{len(results.runs)} of {len(cfg.runs())} runs finished; evaluated model: {cfg.checkpoint}.pt; "
        f"split id {html.escape(results.study.split_id)}.</p>"
    )
    for problem in results.problems:
        parts.append(f"<div class='warn'>{html.escape(problem)}</div>")
    if results.missing:
        parts.append(f"<div class='warn'>Unfinished runs: {html.escape(', '.join(results.missing))}</div>")
    parts += ["<h2>Out-of-fold per-patient metrics</h2>", "<p>Click a column header to sort.</p>"]
    rows = [[str(c).strip("`") if isinstance(c, str) else c for c in row] for row in results_rows(results.table)]
    parts.append("<div class='scroll'>" + html_table(RESULTS_HEADER, rows, sortable=True) + "</div>")
    parts.append("<h2>Tests</h2><ul>")
    parts += [f"<li>{html.escape(line)}</li>" for line in friedman_lines(results.friedman)]
    parts.append("</ul>")
    for m in results.friedman:
        pairs = [[str(c).strip("`") for c in row] for row in comparison_rows(results.comparisons, m)]
        parts.append(f"<h3>Pairwise Wilcoxon signed-rank tests: {m} (Holm-corrected)</h3>")
        parts.append("<div class='scroll'>" + html_table(COMPARISON_HEADER, pairs, sortable=True) + "</div>")
    methods = methods_text(results).replace("`", "")  # Markdown code marks
    parts += ["<h2>Methods</h2>", f"<p>{html.escape(methods)}</p>", "<h2>Figures</h2>"]
    parts += [figure(path, caption) for caption, path in score_figures]
    if curves:
        parts.append(f"<details><summary>Learning curves of the {len(curves)} runs</summary>")
        parts += [figure(path, caption) for caption, path in curves]
        parts.append("</details>")
    return page(f"gliomaseg study {cfg.name}", parts)


def collect_study(study: Study) -> CollectResult:
    """Gather every finished run of ``study`` and write its tables, figures, ``results.md`` and ``report.html``.

    Safe to call at any time: unfinished runs are listed as such, and statistics use the patients
    every configuration has scored so far.

    Returns:
        A :class:`CollectResult`.

    Example:
        >>> from gliomaseg.study import open_study
        >>> collect_study(open_study("studies/cpu-small")).files[-1]  # doctest: +SKIP
        PosixPath('studies/cpu-small/report.html')
    """
    results = summarise_results(gather_results(study))
    folder, fig_dir = study.folder, study.folder / "figures"
    files = [
        _write_csv(results.table, folder / "results.csv"),
        _write_csv(results.comparisons, folder / "comparisons.csv"),
        _write_csv(results.per_patient, folder / "per_patient.csv"),
        _write_csv(results.runs, folder / "runs.csv"),
        atomic_write_text(folder / "friedman.json", json.dumps(results.friedman, indent=2, default=float) + "\n"),
    ]
    order = results.table["config"].tolist()
    score_figures = []
    if len(results.per_patient):
        for metric in ("dice", "hd95"):
            path = plot_scores(fig_dir / f"{metric}_per_config.png", results.per_patient, order, metric)
            score_figures.append((f"Out-of-fold {metric} per patient and configuration (best rank left)", path))
    curves = _learning_curves(results, fig_dir / "curves") if len(results.runs) else []
    linked = [(caption, str(path.relative_to(folder))) for caption, path in score_figures]
    files.append(atomic_write_text(folder / "results.md", results_markdown(results, linked)))
    files.append(atomic_write_text(folder / "report.html", _html(results, score_figures, curves)))
    files += [p for _, p in score_figures + curves]
    return CollectResult(results, files)
