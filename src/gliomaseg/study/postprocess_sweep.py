"""Choosing the post-processing by cross-validation, judged by the worst patients too.

Each fold model of one study configuration segments its own held-out patients once (once more with
flip TTA), and every post-processing variant is applied to those same probabilities; each patient
thus gets one out-of-fold Dice per variant, compared with the study's statistics (mean, worst
patient, 10th percentile, paired Wilcoxon with Holm correction). Nothing here touches the test part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from gliomaseg.data.index_table import load_index, read_patient
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.ensemble import member_dice
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.study.folder import open_study
from gliomaseg.study.markdown import COMPARISON_HEADER, comparison_rows, md_table
from gliomaseg.study.masks import out_of_fold_models
from gliomaseg.study.stats import describe, pairwise_wilcoxon, wide_table
from gliomaseg.utils import atomic_write_text, json_safe

__all__ = ["VARIANTS", "sweep_postprocess"]

#: The candidates of issue 16: none, one component by size or by summed probability, TTA before it,
#: a minimum component size.
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "largest component (voxels)": {"largest_component": True},
    "largest component (probability)": {"largest_component": True, "component_score": "probability"},
    "min size 200": {"min_size": 200},
    "TTA": {"tta": True},
    "TTA + largest component (voxels)": {"tta": True, "largest_component": True},
    "TTA + largest component (probability)": {"tta": True, "largest_component": True, "component_score": "probability"},
}


def _fold_scores(
    model: Path, patients: list[str], table: pd.DataFrame, variants: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    from gliomaseg.inference.segmenter import Segmenter

    configs = {name: replace(PostprocessConfig(), **changes) for name, changes in variants.items()}
    base = Segmenter.from_checkpoint(model)
    # only the passes some variant needs: the TTA pass costs four forward passes
    segmenters = {tta: base.with_postprocess(tta=tta) for tta in {cfg.tta for cfg in configs.values()}}
    by_patient = dict(tuple(table[table["patient_id"].isin(patients)].groupby("patient_id")))
    rows = []
    for pid in patients:
        images, truth = read_patient(by_patient[pid].sort_values("slice"))
        probas = {tta: seg.predict_proba(images) for tta, seg in segmenters.items()}
        for name, cfg in configs.items():
            dice = member_dice([probas[cfg.tta]], truth, cfg)[0]
            rows.append({"config": name, "patient_id": pid, "dice": dice})
    return rows


def sweep_postprocess(
    study_dir: str | Path,
    config: str,
    *,
    variants: Mapping[str, dict[str, Any]] = VARIANTS,
    progress: bool = True,
) -> pd.DataFrame:
    """Out-of-fold Dice of every post-processing variant for the fold models of ``config``.

    Args:
        study_dir: a finished study folder (``gliomaseg study``).
        config: the configuration whose fold models to use.
        variants: name -> changes to a plain thresholding (0.5, nothing else).
        progress: a progress bar over the folds.

    Returns:
        The summary table (one row per variant: mean, median, min, 10th percentile, 95% CI, n); it
        and ``postprocess_<config>.csv``/``.md`` (with the paired tests) are written in ``study_dir``.

    Raises:
        GliomasegError: the study or a fold model is missing.

    Example:
        >>> sweep_postprocess("studies/accuracy-cpu", "ep48")  # doctest: +SKIP
    """
    study = open_study(study_dir)
    oof = out_of_fold_models(study.folder, config)
    index = study.folder / "index.csv"
    if not index.is_file():
        raise GliomasegError(f"{index} is missing: run the study first")
    table = load_index(index)
    rows: list[dict[str, Any]] = []
    for k, model in tqdm(sorted(oof.models.items()), desc="folds", disable=not progress):
        patients = sorted(p for p, fold in oof.fold_of.items() if fold == k)
        rows += _fold_scores(model, patients, table, variants)
    long = pd.DataFrame(rows)
    summary = _summary(long, list(variants))
    tests = pairwise_wilcoxon(wide_table(long, "dice", list(variants)), "dice")
    stem = study.folder / f"postprocess_{config}"
    atomic_write_text(stem.with_suffix(".csv"), long.to_csv(index=False))
    atomic_write_text(stem.with_suffix(".md"), _markdown(config, summary, tests, len(oof.models)))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(json_safe(summary.to_dict("records")), indent=1) + "\n")
    return summary


def _summary(long: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = []
    for name in names:
        d = describe(long.loc[long["config"] == name, "dice"].to_numpy())
        out.append({"variant": name, **{k: d[k] for k in ("n", "mean", "median", "min", "p10", "ci_low", "ci_high")}})
    return pd.DataFrame(out)


def _markdown(config: str, summary: pd.DataFrame, tests: pd.DataFrame, folds: int) -> str:
    lines = [
        f"# Post-processing of `{config}`, out of fold ({folds} folds)",
        "",
        "| variant | n | mean | median | worst | 10th pct | 95% CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.to_dict("records"):
        lines.append(
            f"| {r['variant']} | {r['n']} | {r['mean']:.3f} | {r['median']:.3f} | {r['min']:.3f} | {r['p10']:.3f} "
            f"| {r['ci_low']:.3f}-{r['ci_high']:.3f} |"
        )
    lines += ["", "Paired Wilcoxon signed-rank tests on the same patients, Holm-corrected:", ""]
    lines.append(md_table(COMPARISON_HEADER, comparison_rows(tests.assign(metric="dice"), "dice")))
    return "\n".join(lines) + "\n"
