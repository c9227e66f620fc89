"""Statistics of a feature against a categorical variable: the paper's test and the ones beside it.

- :func:`fisher_median_split`: the paper's method (Buda et al. 2019): the feature dichotomised at
  its median (``> median`` = high), then Fisher's exact test on the ``2 x k`` table of high/low
  by category. For ``k = 2`` SciPy's ``fisher_exact``; for ``k > 2`` the Fisher-Freeman-Halton
  exact test by full enumeration (:func:`fisher_exact_2xk`), since SciPy's ``r x c`` version is
  Monte Carlo and cannot resolve the small p-values a Bonferroni threshold needs.
- :func:`kruskal_wallis`: rank-based test on the raw feature (SciPy).
- :func:`correct`: Bonferroni / Holm over a family of tests (statsmodels ``multipletests``).
- :func:`auc_with_ci`: ROC AUC of the feature for one category against the rest
  (scikit-learn) with a percentile bootstrap CI over patients.
- :func:`agreement`: Pearson and Spearman correlation and Bland-Altman bias and limits of
  agreement of two measurements of the same feature.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import gammaln

from gliomaseg.errors import GliomasegError

__all__ = [
    "MAX_TABLES",
    "Agreement",
    "agreement",
    "auc_with_ci",
    "correct",
    "fisher_exact_2xk",
    "fisher_median_split",
    "kruskal_wallis",
    "median_split_table",
]

log = logging.getLogger(__name__)

#: Largest number of ``2 x k`` tables :func:`fisher_exact_2xk` enumerates before it refuses.
MAX_TABLES = 5_000_000


def _log_choose(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    return gammaln(np.asarray(n) + 1) - gammaln(np.asarray(k) + 1) - gammaln(np.asarray(n) - np.asarray(k) + 1)


def fisher_exact_2xk(table: np.ndarray) -> float:
    """Two-sided exact p-value of a ``2 x k`` table (Fisher-Freeman-Halton), by enumeration.

    Every table with the observed margins is enumerated; its probability under independence is
    the multivariate hypergeometric ``prod_j C(c_j, x_j) / C(n, r)`` (``x_j`` the first row,
    ``c_j`` the column sums, ``r`` the first row sum); the p-value sums the probabilities of the
    tables no more probable than the observed one (relative tolerance ``1e-7``, as SciPy's 2 x 2
    test). For ``k = 2`` this equals ``scipy.stats.fisher_exact``.

    Args:
        table: ``2 x k`` non-negative integer counts.

    Returns:
        The p-value.

    Raises:
        GliomasegError: not ``2 x k``, negative counts, or more than :data:`MAX_TABLES` tables.

    Example:
        >>> round(fisher_exact_2xk(np.array([[8, 2], [1, 5]])), 4)  # as scipy.stats.fisher_exact
        0.035
    """
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] != 2 or (t < 0).any():
        raise GliomasegError(f"expected a 2 x k table of non-negative counts, got {t.tolist()}")
    t = t[:, t.sum(axis=0) > 0].astype(np.int64)
    if t.shape[1] < 2 or (t.sum(axis=1) == 0).any():
        return 1.0
    cols, r = t.sum(axis=0), int(t[0].sum())
    if float(np.prod(cols[:-1] + 1.0)) > MAX_TABLES:
        raise GliomasegError(f"table {t.tolist()} has too many possible tables for exact enumeration")
    # Enumerate the first row column by column, pruning partial sums that cannot reach r.
    sums = np.zeros(1, np.int64)
    logp = np.zeros(1)
    left = int(cols.sum())
    for c in cols[:-1]:
        left -= int(c)
        x = np.arange(c + 1)
        sums = (sums[:, None] + x[None]).ravel()
        logp = (logp[:, None] + _log_choose(c, x)[None]).ravel()
        keep = (sums <= r) & (sums + left >= r)
        sums, logp = sums[keep], logp[keep]
    logp = logp + _log_choose(cols[-1], r - sums) - _log_choose(cols.sum(), r)
    observed = float(np.sum(_log_choose(cols, t[0])) - _log_choose(cols.sum(), r))
    p = np.exp(logp)
    return float(min(1.0, p[logp <= observed + np.log1p(1e-7)].sum()))


def median_split_table(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list, float]:
    """The ``2 x k`` table of a feature dichotomised at its median against a categorical variable.

    Args:
        values: feature values (no NaN).
        groups: the category of each value.

    Returns:
        ``(table, categories, median)``: row 0 counts values ``> median`` (high), row 1 the rest,
        one column per category in sorted order.
    """
    values, groups = np.asarray(values, float), np.asarray(groups)
    median = float(np.median(values))
    categories = sorted(set(groups.tolist()))
    high = values > median
    table = np.array([[int(np.sum(high & (groups == g))) for g in categories], [0] * len(categories)])
    table[1] = [int(np.sum(groups == g)) for g in categories] - table[0]
    return table, categories, median


def fisher_median_split(values: np.ndarray, groups: np.ndarray) -> float:
    """The paper's test: Fisher's exact test of the median-split feature against the categories.

    Exact for every table this project meets; a ``2 x k`` table with more than :data:`MAX_TABLES`
    possible tables (hundreds of patients) falls back to SciPy's Monte Carlo test, with a warning.

    Returns:
        The two-sided p-value (NaN with fewer than two categories).

    Example:
        >>> round(fisher_median_split(np.arange(8.0), np.array([0, 0, 0, 0, 1, 1, 1, 1])), 4)  # 2 / 70
        0.0286
    """
    table, categories, _ = median_split_table(values, groups)
    if len(categories) < 2:
        return math.nan
    if len(categories) == 2:
        return float(stats.fisher_exact(table).pvalue)
    if float(np.prod(table.sum(axis=0)[:-1] + 1.0)) > MAX_TABLES:
        # Too many tables to enumerate (hundreds of patients): SciPy's Monte Carlo test, resolution 1e-5.
        log.warning("Fisher test of %s by Monte Carlo (100000 tables): too many tables to enumerate", table.tolist())
        method = stats.MonteCarloMethod(n_resamples=100_000, rng=0)
        return float(stats.fisher_exact(table, method=method).pvalue)
    return fisher_exact_2xk(table)


def kruskal_wallis(values: np.ndarray, groups: np.ndarray) -> float:
    """Kruskal-Wallis p-value of the raw feature across the categories (NaN if not testable)."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    samples = [values[groups == g] for g in sorted(set(groups.tolist()))]
    if len(samples) < 2 or np.ptp(values) == 0:
        return math.nan
    return float(stats.kruskal(*samples).pvalue)


def correct(pvalues: np.ndarray, method: str) -> np.ndarray:
    """Family-wise corrected p-values: ``method`` ``bonferroni`` or ``holm`` (NaN kept as NaN).

    The family is the non-NaN p-values given; their number is the number of tests.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


def auc_with_ci(
    values: np.ndarray, positive: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """ROC AUC of a feature as a score for ``positive`` against the rest, with a bootstrap CI.

    AUC above 0.5 means higher values in the positive group, below 0.5 lower values. The CI
    resamples patients with replacement (``n_boot`` times; resamples with one class only are
    dropped) and takes percentiles. Inside the bootstrap the AUC is the Mann-Whitney statistic
    from ranks, which equals scikit-learn's ``roc_auc_score`` and runs on all resamples at once.

    Args:
        values: feature values (no NaN).
        positive: boolean, the patients of the category.
        n_boot: bootstrap resamples (0: no CI).
        seed: random seed of the resampling.
        level: confidence level.

    Returns:
        ``(auc, ci_low, ci_high)``; all NaN when one class is empty.

    Example:
        >>> auc_with_ci(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, False, True, True]), n_boot=100)
        (1.0, 1.0, 1.0)
    """
    from sklearn.metrics import roc_auc_score

    values, positive = np.asarray(values, float), np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return math.nan, math.nan, math.nan
    auc = float(roc_auc_score(positive, values))
    if n_boot <= 0:
        return auc, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    x, y = values[idx], positive[idx]
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    ranks = stats.rankdata(x, axis=1)
    u = np.where(y, ranks, 0.0).sum(axis=1) - n1 * (n1 + 1) / 2
    ok = (n1 > 0) & (n0 > 0)
    boot = u[ok] / (n1[ok] * n0[ok])
    alpha = (1 - level) / 2
    return auc, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


@dataclass(frozen=True)
class Agreement:
    """Agreement of two measurements (``b`` against ``a``) of one feature over patients.

    Attributes:
        n: patients with both values.
        pearson, pearson_p: Pearson correlation and its p-value.
        spearman, spearman_p: Spearman rank correlation and its p-value.
        bias: mean of ``b - a`` (Bland-Altman).
        loa_low, loa_high: limits of agreement, ``bias -/+ 1.96 SD(b - a)``.
    """

    n: int
    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    bias: float
    loa_low: float
    loa_high: float


def agreement(a: np.ndarray, b: np.ndarray) -> Agreement:
    """Correlation and Bland-Altman agreement of ``b`` (e.g. predicted masks) with ``a`` (truth).

    Pairs with a NaN on either side are left out; fewer than 3 pairs give NaN statistics.

    Example:
        >>> agreement(np.array([1.0, 2.0, 4.0]), np.array([2.0, 3.0, 5.0])).bias
        1.0
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise GliomasegError(f"agreement needs paired values, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return Agreement(int(len(a)), *([math.nan] * 7))
    diff = b - a
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    # Equal up to rounding (e.g. the same shape in every patient): no correlation to speak of.
    constant = any(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())) for x in (a, b))
    pr = (math.nan, math.nan) if constant else stats.pearsonr(a, b)
    sr = (math.nan, math.nan) if constant else stats.spearmanr(a, b)
    return Agreement(
        n=int(len(a)),
        pearson=float(pr[0]),
        pearson_p=float(pr[1]),
        spearman=float(sr[0]),
        spearman_p=float(sr[1]),
        bias=bias,
        loa_low=bias - 1.96 * sd,
        loa_high=bias + 1.96 * sd,
    )
