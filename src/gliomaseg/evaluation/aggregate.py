"""Summaries of metric tables over cases (patients or slices): mean, median, spread, worst cases and
bootstrap confidence intervals, with the empty-case convention of :mod:`gliomaseg.evaluation.metrics`.

The worst cases are reported beside the mean (``min`` and ``p10``, the 10th percentile): a tool
whose mean looks good can still delete a small tumour entirely, and a reader of a results table
should see that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.metrics import CASES, OVERLAP_METRICS, SUMMARY_COLUMNS

__all__ = ["empty_cases", "summarise", "summarise_table"]


def summarise(
    values: Iterable[float] | np.ndarray | pd.Series, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> dict[str, float | int]:
    """Mean, median, std and a bootstrap percentile CI of the mean over cases, ignoring NaN.

    Args:
        values: one value per case (slice or patient). NaN entries are dropped and counted.
        n_boot: number of bootstrap resamples (with replacement) of the non-NaN values.
        ci: confidence level of the two-sided percentile interval, in (0, 1).
        seed: seed of ``numpy.random.default_rng``; same seed, same interval.

    Returns:
        ``n`` (values used), ``n_missing`` (NaN dropped), ``mean``, ``median``, ``std`` (ddof=1,
        NaN if n < 2), ``min``, ``p10`` (10th percentile, numpy's linear method), ``ci_low``,
        ``ci_high``. Floats are NaN when ``n == 0``.

    Raises:
        GliomasegError: ``n_boot < 1`` or ``ci`` outside (0, 1).
    """
    if not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise GliomasegError(f"n_boot must be a positive integer, got {n_boot!r}.")
    if not 0.0 < ci < 1.0:
        raise GliomasegError(f"ci must be in (0, 1), e.g. 0.95, got {ci!r}.")
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = ~np.isnan(x)
    x = x[finite]
    n = int(x.size)
    out: dict[str, float | int] = {"n": n, "n_missing": int((~finite).sum())}
    if n == 0:
        out.update(
            mean=math.nan, median=math.nan, std=math.nan, min=math.nan, p10=math.nan, ci_low=math.nan, ci_high=math.nan
        )
        return out
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    # Chunked so the n_boot x n index matrix stays small for large n.
    step = max(1, 2_000_000 // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        boot[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    out.update(
        mean=float(x.mean()),
        median=float(np.median(x)),
        std=float(x.std(ddof=1)) if n > 1 else math.nan,
        min=float(x.min()),
        p10=float(np.percentile(x, 10)),
        ci_low=float(low),
        ci_high=float(high),
    )
    return out


def _summarise_frame(df: pd.DataFrame, columns: Sequence[str], n_boot: int, ci: float, seed: int) -> dict:
    case = df["case"].astype(str)
    tumour = case == CASES[0]
    counts = {name: int((case == name).sum()) for name in CASES}
    empty_truth = counts["true_negative"] + counts["false_positive"]
    out: dict[str, Any] = {
        "n_cases": len(df),
        "cases": counts,
        # hd95 is undefined for these; they are inside the dice/iou/sensitivity/precision means as 0.
        "n_tumour_empty_prediction": int((tumour & (df["pred_pixels"] == 0)).sum()) if "pred_pixels" in df else None,
        "false_positive_rate_on_empty_truth": counts["false_positive"] / empty_truth if empty_truth else math.nan,
        "metrics": {},
    }
    for col in columns:
        values = df[col].to_numpy(dtype=np.float64)
        if col in OVERLAP_METRICS:
            values = values[tumour.to_numpy()]
        out["metrics"][col] = summarise(values, n_boot=n_boot, ci=ci, seed=seed)
    return out


def summarise_table(
    df: pd.DataFrame,
    columns: Sequence[str] = SUMMARY_COLUMNS,
    group: str | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Aggregate a metrics table (from :func:`slice_metrics` or rows of :func:`binary_metrics`).

    Overlap metrics (dice, iou, precision, sensitivity, hd95) are aggregated over ``"tumour"``
    rows only; ``accuracy`` and ``specificity`` over all rows. NaN values are dropped and counted
    (``n_missing``): for ``hd95`` that is the tumour cases with an empty prediction.

    Args:
        df: one row per case with a ``case`` column and the metric columns.
        columns: metric columns to summarise (each with :func:`summarise`).
        group: optional column (e.g. ``"patient"`` or ``"split"``) to also summarise per value.
        n_boot: bootstrap resamples, passed to :func:`summarise`.
        ci: confidence level, passed to :func:`summarise`.
        seed: bootstrap seed, passed to :func:`summarise`.

    Returns:
        A JSON-serialisable dict (floats may be NaN, which ``json.dump`` writes as ``NaN``):
        ``n_cases``, ``cases`` (counts by case), ``n_tumour_empty_prediction``,
        ``false_positive_rate_on_empty_truth`` (share of empty-truth cases with a non-empty
        prediction), ``metrics`` (``{column: summarise(...)}``) and, with ``group``, ``groups``
        (``{str(value): same structure}``).

    Raises:
        GliomasegError: a missing ``case``, metric or group column.
    """
    missing = [c for c in ("case", *columns, *([group] if group else [])) if c not in df.columns]
    if missing:
        raise GliomasegError(f"summarise_table: column(s) {missing} not in the table; available: {list(df.columns)}.")
    unknown = sorted(set(df["case"].astype(str)) - set(CASES))
    if unknown:
        raise GliomasegError(f"summarise_table: unknown case label(s) {unknown}; expected one of {CASES}.")
    out = _summarise_frame(df, columns, n_boot, ci, seed)
    if group is not None:
        out["groups"] = {
            str(key): _summarise_frame(sub, columns, n_boot, ci, seed) for key, sub in df.groupby(group, sort=True)
        }
    return out


def empty_cases(volume: dict[str, Any], slices: dict[str, Any]) -> dict[str, Any]:
    """The empty-case counts of an evaluation from its volume and slice summaries (``summarise_table``)."""
    return {
        "patients_without_tumour": volume["cases"]["true_negative"] + volume["cases"]["false_positive"],
        "patients_without_tumour_with_prediction": volume["cases"]["false_positive"],
        "patients_with_tumour_missed_entirely": volume["n_tumour_empty_prediction"],
        "tumour_slices": slices["cases"]["tumour"],
        "tumour_slices_missed": slices["n_tumour_empty_prediction"],
        "empty_slices": slices["cases"]["true_negative"] + slices["cases"]["false_positive"],
        "empty_slices_true_negative": slices["cases"]["true_negative"],
        "empty_slices_false_positive": slices["cases"]["false_positive"],
        "false_positive_rate_on_empty_slices": slices["false_positive_rate_on_empty_truth"],
    }
