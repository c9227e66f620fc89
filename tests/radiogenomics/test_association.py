"""Statistics of the radiogenomics analysis on inputs with known answers (SciPy, brute force, closed forms)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from gliomaseg.errors import GliomasegError
from gliomaseg.radiogenomics.association import (
    agreement,
    auc_with_ci,
    correct,
    fisher_exact_2xk,
    fisher_median_split,
    kruskal_wallis,
    median_split_table,
)


@pytest.mark.parametrize("table", [[[8, 2], [1, 5]], [[3, 7], [9, 1]], [[10, 12], [14, 11]], [[0, 5], [6, 0]]])
def test_2x2_enumeration_equals_scipy(table):
    assert fisher_exact_2xk(np.array(table)) == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)


def _brute_force_p(table: np.ndarray) -> float:
    """Exact p by relabelling: each choice of which patients are 'high' is equally likely under the null."""
    cols = table.sum(axis=0)
    groups = np.repeat(np.arange(len(cols)), cols)
    n, r = len(groups), int(table[0].sum())

    def prob(first_row: np.ndarray) -> float:
        return math.prod(math.comb(int(c), int(x)) for c, x in zip(cols, first_row)) / math.comb(n, r)

    observed = prob(table[0])
    hits = [
        prob(np.bincount(groups[list(high)], minlength=len(cols))) <= observed * (1 + 1e-7)
        for high in itertools.combinations(range(n), r)
    ]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("table", [[[3, 1, 4], [1, 4, 1]], [[0, 2, 3, 1], [3, 1, 0, 2]], [[2, 2, 2], [2, 2, 2]]])
def test_2xk_enumeration_equals_brute_force(table):
    table = np.array(table)
    assert fisher_exact_2xk(table) == pytest.approx(_brute_force_p(table), abs=1e-12)


def test_too_many_tables_fall_back_to_monte_carlo(monkeypatch):
    import gliomaseg.radiogenomics.association as association

    values = np.arange(12.0)
    groups = np.array(list("aabbbccaabcc"))
    exact = fisher_median_split(values, groups)
    monkeypatch.setattr(association, "MAX_TABLES", 10)
    with pytest.raises(GliomasegError, match="too many"):
        fisher_exact_2xk(median_split_table(values, groups)[0])
    assert fisher_median_split(values, groups) == pytest.approx(exact, abs=0.01)


def test_2xk_rejects_a_bad_table():
    with pytest.raises(GliomasegError, match="2 x k"):
        fisher_exact_2xk(np.array([[1, 2], [3, 4], [5, 6]]))


def test_median_split_counts_and_the_perfect_split():
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8.0])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    table, cats, median = median_split_table(values, groups)
    assert cats == ["a", "b"] and median == 4.5
    np.testing.assert_array_equal(table, [[0, 4], [4, 0]])
    # All four highs in one group: 2 of the C(8, 4) = 70 equally likely tables are this extreme.
    assert fisher_median_split(values, groups) == pytest.approx(2 / 70)
    assert math.isnan(fisher_median_split(values, np.array(["a"] * 8)))


def test_kruskal_wallis_is_scipys():
    rng = np.random.default_rng(0)
    values = rng.normal(size=30)
    groups = np.repeat(["1", "2", "3"], 10)
    expected = stats.kruskal(values[:10], values[10:20], values[20:]).pvalue
    assert kruskal_wallis(values, groups) == pytest.approx(expected)
    assert math.isnan(kruskal_wallis(np.ones(6), np.array(["1", "2"] * 3)))


@pytest.mark.parametrize(
    ("method", "expected"),
    [("bonferroni", [0.03, 0.12, 1.0, math.nan]), ("holm", [0.03, 0.08, 0.5, math.nan])],
)
def test_corrections_over_the_tests_made(method, expected):
    # NaN (a test not made) is not counted: 3 tests.
    np.testing.assert_allclose(correct(np.array([0.01, 0.04, 0.5, math.nan]), method), expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("positive", "expected"),
    [([0, 0, 0, 1, 1, 1], 1.0), ([1, 1, 1, 0, 0, 0], 0.0)],
)
def test_auc_of_a_perfectly_separating_feature(positive, expected):
    values = np.array([1, 2, 3, 10, 11, 12], float)
    auc, lo, hi = auc_with_ci(values, np.array(positive, bool), n_boot=200)
    assert (auc, lo, hi) == (expected, expected, expected)


def test_auc_matches_sklearn_and_its_ci_covers_it():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=80), 1)  # ties on purpose: the rank formula must handle them
    positive = rng.random(80) < 0.3
    auc, lo, hi = auc_with_ci(values, positive, n_boot=1000)
    assert auc == pytest.approx(roc_auc_score(positive, values))
    assert lo < auc < hi and hi - lo < 0.5
    # The bootstrap's rank formula equals scikit-learn on a resample, ties included.
    idx = np.random.default_rng(0).integers(0, 80, size=(1, 80))
    one = auc_with_ci(values[idx[0]], positive[idx[0]], n_boot=0)[0]
    assert one == pytest.approx(roc_auc_score(positive[idx[0]], values[idx[0]]))


def test_auc_is_nan_with_one_class():
    assert all(math.isnan(v) for v in auc_with_ci(np.arange(5.0), np.ones(5, bool)))


def test_agreement_bland_altman_and_correlation():
    a = np.array([1.0, 2.0, 3.0, 4.0, math.nan])
    b = np.array([3.0, 4.0, 5.0, 6.0, 1.0])
    res = agreement(a, b)
    assert res.n == 4
    assert res.bias == pytest.approx(2.0) and res.loa_low == pytest.approx(2.0) and res.loa_high == pytest.approx(2.0)
    assert res.pearson == pytest.approx(1.0) and res.spearman == pytest.approx(1.0)
    diff = np.array([0.5, -0.5, 1.0, -1.0, 0.0])
    res = agreement(np.arange(5.0), np.arange(5.0) + diff)
    sd = np.std(diff, ddof=1)
    assert (res.loa_low, res.loa_high) == pytest.approx((-1.96 * sd, 1.96 * sd))
    assert math.isnan(agreement(np.ones(2), np.ones(2)).pearson)
