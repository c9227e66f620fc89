"""Markdown for the study's ``results.md`` (tables, tests and a paste-ready methods paragraph).

The pipe tables themselves come from :mod:`gliomaseg.evaluation.markdown`, shared with the
exploration and radiogenomics reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from gliomaseg.evaluation.markdown import md_table, num

__all__ = [
    "COMPARISON_HEADER",
    "RESULTS_HEADER",
    "comparison_rows",
    "friedman_line",
    "friedman_lines",
    "methods_text",
    "results_markdown",
    "results_rows",
]

_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "dice_shifted": "Dice under shifts"}


def _p(value: float) -> str:
    return "-" if value is None or math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _pm(mean: float, std: float, digits: int) -> str:
    return "-" if mean is None or math.isnan(mean) else f"{num(mean, digits)} ± {num(std, digits)}"


def results_rows(table: pd.DataFrame) -> list[list[Any]]:
    rows = []
    for r in table.to_dict("records"):
        ci = "-" if r["dice_n"] == 0 else f"{num(r['dice_ci_low'])}-{num(r['dice_ci_high'])}"
        params = f"{r['n_parameters'] / 1e6:.2f} M" if r.get("n_parameters") else "-"
        rows.append(
            [
                "-" if pd.isna(r["rank"]) else int(r["rank"]),
                f"`{r['config']}`",
                r["dice_n"],
                _pm(r["dice_mean"], r["dice_std"], 3),
                r["dice_median"],
                ci,
                r["dice_min"],
                r["dice_p10"],
                _pm(r["iou_mean"], r["iou_std"], 3),
                _pm(r["hd95_mean"], r["hd95_std"], 1),
                _pm(r.get("dice_shifted_mean", math.nan), r.get("dice_shifted_std", math.nan), 3),
                num(r["mean_rank"], 2),
                params,
                num(r["train_minutes_per_fold"], 1),
                f"{r['folds_done']}",
            ]
        )
    return rows


RESULTS_HEADER = (
    "rank",
    "configuration",
    "patients",
    "Dice mean ± std",
    "Dice median",
    "Dice 95% CI",
    "Dice min",
    "Dice 10th pct",
    "IoU mean ± std",
    "HD95 (px) mean ± std",
    "Dice under shifts mean ± std",
    "mean rank",
    "parameters",
    "train min / fold",
    "folds",
)


def comparison_rows(comparisons: pd.DataFrame, metric: str) -> list[list[Any]]:
    rows = []
    for r in comparisons[comparisons["metric"] == metric].to_dict("records"):
        rows.append(
            [
                f"`{r['a']}`",
                f"`{r['b']}`",
                r["n"],
                f"{num(r['mean_diff'])} / {num(r['median_diff'])}",
                f"{r['a_better']} / {r['b_better']}",
                num(r["statistic"], 1),
                _p(r["p"]),
                _p(r["p_holm"]),
                num(r["rank_biserial"], 2),
                "yes" if r["significant"] else "no",
            ]
        )
    return rows


COMPARISON_HEADER = (
    "A",
    "B",
    "patients",
    "A - B mean / median",
    "A better / B better",
    "W",
    "p",
    "p (Holm)",
    "rank-biserial r",
    "significant",
)


def friedman_lines(tests: dict[str, dict[str, Any]]) -> list[str]:
    """One line per metric's Friedman test (one line in all when none applies, e.g. 2 configurations)."""
    notes = {t.get("note") for t in tests.values()}
    if len(notes) == 1 and None not in notes:
        return [f"Friedman test not applicable ({notes.pop()})."]
    return [friedman_line(_NAMES[m], t) for m, t in tests.items()]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def friedman_line(name: str, test: dict[str, Any]) -> str:
    if "note" in test:
        return f"{name}: Friedman test not applicable ({test['note']})."
    return (
        f"{name}: Friedman chi2({test['df']}) = {num(test['statistic'], 2)}, p = {_p(test['p'])}, "
        f"n = {test['n']} patients, k = {test['k']} configurations, Kendall's W = {num(test['kendall_w'], 2)}."
    )


def methods_text(results: Any) -> str:
    """A paste-ready methods paragraph describing the protocol and the statistics of ``results``."""
    study = results.study
    cfg = study.config
    splits = study.splits()
    n_test = len(splits["test"])
    strata = " and ".join({"site": "acquisition site", "burden": "tumour burden"}[s] for s in splits["stratify"])
    strata_text = f"stratified by {strata}" if strata else "not stratified (too few patients)"
    n = int(results.per_patient["patient_id"].nunique()) if len(results.per_patient) else 0
    epochs = sorted({int(e) for e in results.runs.get("epochs", pd.Series(dtype=int)).dropna()})
    epoch_text = _plural(epochs[0], "epoch") if len(epochs) == 1 else "a fixed number of epochs (see the table)"
    axes = "; ".join(f"{axis}: {', '.join(values)}" for axis, values in cfg.axes.items())
    if cfg.checkpoint == "last":
        model_text = (
            f"each configuration was trained for {epoch_text} on the other folds' patients and the model after the "
            "last epoch was evaluated on the held-out fold; nothing (no checkpoint, no stopping epoch) was chosen on "
            "the held-out patients"
        )
    else:
        model_text = (
            f"each configuration was trained for {epoch_text} on the other folds' patients and the checkpoint with "
            "the best Dice on the held-out fold was evaluated on that fold; as it was selected on the same patients, "
            "these scores are slightly optimistic"
        )
    k = len(cfg.configs())
    n_boot = int(cfg.statistics.get("n_boot", 2000))
    alpha = cfg.statistics.get("alpha", 0.05)
    sentences = [
        f"We compared {k} configurations ({axes}) with {cfg.folds}-fold patient-level cross-validation over "
        f"{n} patients; the test part ({_plural(n_test, 'patient')}) was not used.",
        f"The folds (split id `{study.split_id}`) were {strata_text} and identical for every configuration.",
        f"For each fold, {model_text}.",
        "Every patient thus has one out-of-fold score per configuration.",
        "Scores are per patient volume at the data's resolution (Dice, IoU; HD95 in pixels, one slice counting "
        "as one pixel).",
        "We report the mean, standard deviation and median over patients, a 95% percentile bootstrap "
        f"confidence interval of the mean ({n_boot} resamples), and the minimum and 10th percentile of Dice as "
        "the worst case.",
        "Configurations were compared with " + ("Friedman's test and with " if k >= 3 else "") + "two-sided "
        "Wilcoxon signed-rank tests on "
        f"the same patients for each pair ({_plural(k * (k - 1) // 2, 'pair')}), Holm-corrected "
        f"(alpha = {alpha}); the effect size is the matched-pairs rank-biserial correlation (positive: A "
        "scores higher).",
    ]
    return " ".join(sentences)


def results_markdown(results: Any, figures: Sequence[tuple[str, str]] = ()) -> str:
    """The text of ``results.md`` for a :class:`~gliomaseg.study.results.StudyResults`.

    Args:
        results: summarised results.
        figures: ``(caption, relative path)`` of figures to link.
    """
    study, cfg = results.study, results.study.config
    metric = results.metric
    lines = [f"# Study `{cfg.name}`: results", ""]
    done, total = len(results.runs), len(cfg.runs())
    lines.append(
        f"{done} of {total} runs finished ({len(cfg.configs())} configurations x {cfg.folds} folds); evaluated "
        f"model: `{cfg.checkpoint}.pt`; split id `{study.split_id}`; gliomaseg {study.record['package_version']}."
    )
    if results.missing:
        lines += ["", f"**Unfinished runs ({len(results.missing)})**: " + ", ".join(results.missing[:20])]
    for problem in results.problems:
        lines.append(f"\n**Left out**: {problem}")
    lines += ["", "## Out-of-fold per-patient metrics", "", md_table(RESULTS_HEADER, results_rows(results.table))]
    lines += [
        "",
        f"Ranked by the mean per-patient rank on {_NAMES[metric]} (1 = best on a patient), over the patients "
        "scored by every configuration. 95% CI: percentile bootstrap of the mean over patients. HD95 over "
        "patients with a predicted mask.",
        "",
        "## Tests",
        "",
    ]
    lines += [f"- {line}" for line in friedman_lines(results.friedman)]
    if len(results.comparisons):
        for m in results.friedman:
            pairs = comparison_rows(results.comparisons, m)
            lines += ["", f"Pairwise Wilcoxon signed-rank tests, {_NAMES[m]} (Holm over {len(pairs)} pairs):", ""]
            lines.append(md_table(COMPARISON_HEADER, pairs))
    lines += ["", "## Methods", "", methods_text(results)]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{caption}]({path})" for caption, path in figures]
    return "\n".join(lines) + "\n"
