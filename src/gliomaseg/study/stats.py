"""Statistics over per-patient scores of several configurations evaluated on the same patients.

- :func:`describe`: mean, std, median and a bootstrap 95% CI over patients (the evaluation's own
  :func:`~gliomaseg.evaluation.metrics.summarise`), plus the worst case: minimum and 10th percentile.
- :func:`friedman`: Friedman's test across all configurations (``scipy.stats.friedmanchisquare``)
  with Kendall's W as its effect size.
- :func:`pairwise_wilcoxon`: paired Wilcoxon signed-rank tests (``scipy.stats.wilcoxon``) between
  every two configurations on the patients both have, Holm-corrected over the pairs
  (``statsmodels.stats.multitest.multipletests``), with the matched-pairs rank-biserial
  correlation as effect size and the number of patients.
- :func:`mean_ranks`: each patient ranks the configurations; the mean rank orders them.

Input everywhere: a *wide* table, one row per patient and one column per configuration
(:func:`wide_table` builds it from the long per-patient table and keeps the complete rows).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.aggregate import summarise

__all__ = [
    "LOWER_IS_BETTER",
    "describe",
    "friedman",
    "holm",
    "mean_ranks",
    "pairwise_wilcoxon",
    "rank_biserial",
    "wide_table",
]

#: Metrics where a smaller value is better (distances); all others: larger is better.
LOWER_IS_BETTER = frozenset({"hd95"})


def wide_table(per_patient: pd.DataFrame, metric: str, configs: list[str] | None = None) -> pd.DataFrame:
    """Patients x configurations of ``metric``, keeping only patients with a value for every configuration.

    Args:
        per_patient: long table with ``config``, ``patient_id`` and ``metric`` columns.
        metric: the column to spread.
        configs: columns in this order (default: order of first appearance).

    Returns:
        A float table indexed by ``patient_id`` (sorted), one column per configuration.

    Raises:
        GliomasegError: missing columns, or a patient listed twice for one configuration.
    """
    missing = [c for c in ("config", "patient_id", metric) if c not in per_patient.columns]
    if missing:
        raise GliomasegError(f"per-patient table lacks column(s) {missing}")
    if per_patient.duplicated(["config", "patient_id"]).any():
        row = per_patient[per_patient.duplicated(["config", "patient_id"])].iloc[0]
        raise GliomasegError(f"patient {row['patient_id']} appears twice for configuration {row['config']}")
    configs = configs or list(dict.fromkeys(per_patient["config"]))
    wide = per_patient.pivot(index="patient_id", columns="config", values=metric).reindex(columns=configs)
    return wide.astype(float).dropna().sort_index()


def describe(values: Any, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> dict[str, float | int]:
    """Summary of one configuration's per-patient values (NaN dropped and counted).

    Returns:
        ``n``, ``n_missing``, ``mean``, ``median``, ``std``, ``ci_low``, ``ci_high`` (bootstrap of
        the mean over patients), ``min`` and ``p10`` (10th percentile: the worst-case tail).
    """
    x = np.asarray(values, dtype=np.float64)
    out = dict(summarise(x, n_boot=n_boot, ci=ci, seed=seed))
    finite = x[~np.isnan(x)]
    out["min"] = float(finite.min()) if finite.size else math.nan
    out["p10"] = float(np.percentile(finite, 10)) if finite.size else math.nan
    return out


def _oriented(wide: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Scores where larger is better (distances negated), so ranks and 'better' mean the same everywhere."""
    return -wide if metric in LOWER_IS_BETTER else wide


def mean_ranks(wide: pd.DataFrame, metric: str = "dice") -> pd.Series:
    """Mean rank of each configuration over patients (1 = best on that patient; ties share the average rank)."""
    if wide.empty:
        return pd.Series(math.nan, index=wide.columns)
    ranks = stats.rankdata(-_oriented(wide, metric).to_numpy(), axis=1, method="average")
    return pd.Series(ranks.mean(axis=0), index=wide.columns)


def friedman(wide: pd.DataFrame) -> dict[str, Any]:
    """Friedman's test that all configurations score alike on the same patients.

    Returns:
        ``statistic`` (chi-square), ``df``, ``p``, ``n`` (patients), ``k`` (configurations) and
        ``kendall_w`` (chi-square / (n (k - 1)), 0 = no agreement, 1 = same order on every patient);
        NaN with a ``note`` when fewer than 3 configurations or 2 patients.
    """
    n, k = wide.shape
    out: dict[str, Any] = {"n": n, "k": k, "statistic": math.nan, "df": k - 1, "p": math.nan, "kendall_w": math.nan}
    if k < 3:
        out["note"] = "needs 3 or more configurations: see the pairwise Wilcoxon test"
    elif n < 2:
        out["note"] = "needs 2 or more patients"
    elif np.all(wide.to_numpy() == wide.to_numpy()[:, :1]):
        # scipy divides by zero when every patient ties every configuration; no difference at all.
        out.update(statistic=0.0, p=1.0, kendall_w=0.0)
    else:
        res = stats.friedmanchisquare(*(wide[c].to_numpy() for c in wide.columns))
        out.update(statistic=float(res.statistic), p=float(res.pvalue), kendall_w=float(res.statistic) / (n * (k - 1)))
    return out


def rank_biserial(a: Any, b: Any) -> float:
    """Matched-pairs rank-biserial correlation of ``a - b`` (Kerby 2014), zero differences dropped.

    ``(R+ - R-) / (R+ + R-)`` with ``R+``/``R-`` the rank sums of the positive/negative differences
    ranked by absolute size: +1 when ``a`` is larger on every patient, -1 when ``b`` is, 0 when
    balanced. scipy's ``wilcoxon`` reports only one rank sum, hence these lines.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def holm(pvalues: Any) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (statsmodels ``multipletests(method="holm")``); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    if not np.any(d):
        # Identical scores: no evidence of a difference (scipy would divide by zero here).
        return 0.0, 1.0
    res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def pairwise_wilcoxon(wide: pd.DataFrame, metric: str = "dice", *, alpha: float = 0.05) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test between every two configurations, Holm-corrected.

    Args:
        wide: patients x configurations (complete rows, see :func:`wide_table`).
        metric: the metric's name (recorded; ``hd95`` counts smaller as better).
        alpha: family-wise error rate for the ``significant`` column.

    Returns:
        One row per pair ``a``, ``b``: ``metric``, ``n`` (patients), ``n_nonzero`` (pairs that
        differ), ``mean_a``, ``mean_b``, ``mean_diff`` and ``median_diff`` (a - b), ``a_better``,
        ``b_better`` (patients), ``statistic`` (scipy's W), ``p``, ``p_holm``, ``rank_biserial``
        (of a - b; positive: a larger), ``significant`` (``p_holm < alpha``).

    Example:
        >>> wide = pd.DataFrame({"x": [0.8, 0.7, 0.9, 0.6, 0.85, 0.75], "y": [0.7, 0.6, 0.8, 0.5, 0.8, 0.7]})
        >>> row = pairwise_wilcoxon(wide).iloc[0]
        >>> row["rank_biserial"], row["a_better"]
        (1.0, 6)
    """
    better = _oriented(wide, metric)
    rows = []
    for a, b in itertools.combinations(wide.columns, 2):
        x, y = wide[a].to_numpy(), wide[b].to_numpy()
        statistic, p = _wilcoxon(x, y) if len(x) else (math.nan, math.nan)
        d = x - y
        rows.append(
            {
                "metric": metric,
                "a": a,
                "b": b,
                "n": len(x),
                "n_nonzero": int(np.count_nonzero(d)),
                "mean_a": float(x.mean()) if len(x) else math.nan,
                "mean_b": float(y.mean()) if len(y) else math.nan,
                "mean_diff": float(d.mean()) if len(d) else math.nan,
                "median_diff": float(np.median(d)) if len(d) else math.nan,
                "a_better": int((better[a] > better[b]).sum()),
                "b_better": int((better[b] > better[a]).sum()),
                "statistic": statistic,
                "p": p,
                "rank_biserial": rank_biserial(x, y),
            }
        )
    table = pd.DataFrame(rows, columns=[*_PAIR_COLUMNS[:-2]])
    table["p_holm"] = holm(table["p"]) if len(table) else []
    table["significant"] = table["p_holm"] < alpha
    return table


_PAIR_COLUMNS = (
    "metric",
    "a",
    "b",
    "n",
    "n_nonzero",
    "mean_a",
    "mean_b",
    "mean_diff",
    "median_diff",
    "a_better",
    "b_better",
    "statistic",
    "p",
    "rank_biserial",
    "p_holm",
    "significant",
)
