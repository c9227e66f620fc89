"""Gather a study's ``result.json`` files into tables: per patient, per run, per configuration, pairwise tests.

Only results made with the study's current settings count (``settings_digest`` and split id
checked); others are listed as problems and left out. Missing runs are listed, and statistics
use the patients that every configuration has scored, so an unfinished study still gives an
honest (smaller) comparison.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.study.folder import Study, settings_digest
from gliomaseg.study.grid import METRICS
from gliomaseg.study.runner import RESULT_FORMAT
from gliomaseg.study.stats import LOWER_IS_BETTER, describe, friedman, mean_ranks, pairwise_wilcoxon, wide_table

__all__ = ["StudyResults", "gather_results", "summarise_results"]


@dataclass
class StudyResults:
    """Everything the study's tables and report show.

    Attributes:
        study: the study.
        runs: one row per finished run (config, fold, axis labels, parameters, times, epochs).
        per_patient: one row per run and held-out patient (out-of-fold scores).
        missing: runs without a result.
        problems: results left out, with the reason.
        table: one row per configuration (``results.csv``), best first.
        comparisons: pairwise tests for every metric (``comparisons.csv``).
        friedman: metric -> Friedman test result.
        metric: the primary metric.
    """

    study: Study
    runs: pd.DataFrame
    per_patient: pd.DataFrame
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    friedman: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "dice"


def _check(result: dict[str, Any], study: Study, digest: str) -> str | None:
    if result.get("format") != RESULT_FORMAT:
        return f"format {result.get('format')!r} is not {RESULT_FORMAT!r}"
    if result.get("settings_digest") != digest:
        return "made with other study settings"
    if not str(result.get("split_id", "")).startswith(study.split_id + ":"):
        return f"split {result.get('split_id')} is not the study's {study.split_id}"
    return None


def gather_results(study: Study) -> StudyResults:
    """Read every run's ``result.json`` (nothing is computed yet; see :func:`summarise_results`)."""
    digest = settings_digest(study.record["settings"])
    runs, patients, missing, problems = [], [], [], []
    for spec in study.config.runs():
        path = study.run_dir(spec) / "result.json"
        if not path.is_file():
            missing.append(spec.name)
            continue
        result = json.loads(path.read_text())
        problem = _check(result, study, digest)
        if problem:
            problems.append(f"{spec.name}: {problem}; left out")
            continue
        keys = ("checkpoint", "checkpoint_epoch", "epochs", "train_seconds", "eval_seconds", "n_parameters")
        runs.append({"config": spec.config, "fold": spec.fold, **spec.labels, **{k: result.get(k) for k in keys}})
        runs[-1]["package_version"] = result.get("package_version")
        for record in result["patients"]:
            patients.append({"config": spec.config, "fold": spec.fold, **record})
    per_patient = pd.DataFrame(patients)
    for column in ("dice", "iou", "hd95", "precision", "sensitivity", "dice_shifted"):
        if column in per_patient:
            per_patient[column] = pd.to_numeric(per_patient[column], errors="coerce")
    return StudyResults(study, pd.DataFrame(runs), per_patient, missing, problems)


def _config_row(results: StudyResults, config: str, wide_rank: pd.Series, n_boot: int) -> dict[str, Any]:
    study = results.study
    labels = next(s.labels for s in study.config.runs() if s.config == config)
    runs = results.runs[results.runs["config"] == config] if len(results.runs) else results.runs
    scores = results.per_patient[results.per_patient["config"] == config] if len(results.per_patient) else None
    row: dict[str, Any] = {"config": config, **labels, "folds_done": len(runs)}
    row["n_patients"] = 0 if scores is None else int(scores["patient_id"].nunique())
    for metric in METRICS:
        values = scores[metric] if scores is not None and metric in scores else []
        summary = describe(values, n_boot=n_boot)
        for key in ("mean", "std", "median", "ci_low", "ci_high", "n", "n_missing"):
            row[f"{metric}_{key}"] = summary[key]
        if metric == "dice":
            row["dice_min"], row["dice_p10"] = summary["min"], summary["p10"]
            worst = scores.sort_values("dice").iloc[0]["patient_id"] if row["dice_n"] else None
            row["dice_min_patient"] = worst
    row["mean_rank"] = float(wide_rank.get(config, math.nan))
    row["n_parameters"] = int(runs["n_parameters"].iloc[0]) if len(runs) else None
    row["train_minutes_per_fold"] = float(runs["train_seconds"].mean() / 60) if len(runs) else math.nan
    row["train_minutes_total"] = float(runs["train_seconds"].sum() / 60) if len(runs) else math.nan
    row["epochs"] = int(runs["epochs"].iloc[0]) if len(runs) else None
    return row


def summarise_results(results: StudyResults) -> StudyResults:
    """Fill ``table``, ``comparisons`` and ``friedman`` of ``results`` (and return it).

    The ranking orders configurations by their mean per-patient rank on the primary metric
    (patients scored by every configuration), then by the metric's mean.
    """
    cfg = results.study.config
    metric = str(cfg.statistics.get("metric", "dice"))
    n_boot = int(cfg.statistics.get("n_boot", 2000))
    alpha = float(cfg.statistics.get("alpha", 0.05))
    configs = cfg.configs()
    have = results.per_patient
    comparisons, tests = [], {}
    ranks = pd.Series(math.nan, index=configs)
    for m in METRICS:
        if have.empty or m not in have or have[m].isna().all():  # dice_shifted only when the study scores shifts
            continue
        done = [c for c in configs if c in set(have["config"])]
        wide = wide_table(have, m, done)
        tests[m] = friedman(wide)
        comparisons.append(pairwise_wilcoxon(wide, m, alpha=alpha))
        if m == metric:
            ranks = mean_ranks(wide, m).reindex(configs)
    table = pd.DataFrame([_config_row(results, c, ranks, n_boot) for c in configs])
    sign = 1 if metric in LOWER_IS_BETTER else -1
    table["_key"] = sign * table[f"{metric}_mean"].fillna(-sign * np.inf)
    table = table.sort_values(["mean_rank", "_key"], na_position="last").drop(columns="_key")
    ranked = (table["dice_n"] > 0).to_numpy()
    table.insert(0, "rank", pd.array(np.where(ranked, np.cumsum(ranked), 0), dtype="Int64"))
    table.loc[~ranked, "rank"] = pd.NA  # a configuration without any finished run has no rank
    results.table = table.reset_index(drop=True)
    results.comparisons = pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame()
    results.friedman = tests
    results.metric = metric
    return results
