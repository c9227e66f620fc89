"""Study statistics on inputs with known answers (and against scipy on hand-made tables)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gliomaseg.errors import GliomasegError
from gliomaseg.study.stats import describe, friedman, holm, mean_ranks, pairwise_wilcoxon, rank_biserial, wide_table


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # 3x, then 2x (0.06), then max(1x 0.04, 0.06)
        ([0.005, 0.5], [0.01, 0.5]),
        ([0.2, 0.9, 0.6], [0.6, 1.0, 1.0]),  # 2 x 0.6 is capped at 1, and 0.9 may not undercut it
        ([0.01, math.nan, 0.02], [0.02, math.nan, 0.02]),  # NaN left out of the family
    ],
)
def test_holm_known_values(p, expected):
    np.testing.assert_allclose(holm(p), expected, equal_nan=True)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([2, 3, 4], [1, 1, 1], 1.0),  # a larger on every patient
        ([1, 1, 1], [2, 3, 4], -1.0),
        ([1, 2, -3], [0, 0, 0], 0.0),  # ranks 1, 2 positive, 3 negative: (3 - 3) / 6
        ([1, -2, 3, 0], [0, 0, 0, 0], 2 / 6),  # the zero difference is dropped: (1 + 3 - 2) / 6
        ([5, 5], [5, 5], 0.0),
    ],
)
def test_rank_biserial_known_values(a, b, expected):
    assert rank_biserial(a, b) == pytest.approx(expected)


def _long(wide: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"config": c, "patient_id": f"P{i:02d}", "dice": v} for c, values in wide.items() for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_wilcoxon_matches_scipy_on_the_paired_patients():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 0.9, 12)
    b = a - rng.normal(0.03, 0.05, 12)
    table = _long({"A": list(a), "B": list(b)})
    # An extra patient only A has, and shuffled rows: the test must pair by patient, not by row.
    table = pd.concat([table, pd.DataFrame([{"config": "A", "patient_id": "P99", "dice": 0.1}])])
    table = table.sample(frac=1.0, random_state=0)
    wide = wide_table(table, "dice", ["A", "B"])
    row = pairwise_wilcoxon(wide).iloc[0]
    ref = stats.wilcoxon(a, b)
    assert (row["a"], row["b"], row["n"]) == ("A", "B", 12)
    assert row["statistic"] == pytest.approx(ref.statistic)
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["p_holm"] == pytest.approx(ref.pvalue)  # one pair: nothing to correct
    assert row["rank_biserial"] == pytest.approx(rank_biserial(a, b))
    assert row["a_better"] + row["b_better"] == 12


def test_identical_configurations_give_p_one():
    values = [0.8, 0.7, 0.75, 0.9, 0.6]
    wide = wide_table(_long({"x": values, "y": values, "z": values}), "dice")
    pairs = pairwise_wilcoxon(wide)
    assert len(pairs) == 3
    assert (pairs["p"] == 1.0).all() and (pairs["p_holm"] == 1.0).all()
    assert (pairs["rank_biserial"] == 0.0).all() and not pairs["significant"].any()
    assert friedman(wide)["p"] == 1.0


def test_holm_over_pairs_and_direction_for_distances():
    # HD95: smaller is better, so B (always 1 pixel closer) is the better one on every patient.
    a = [10.0, 12.0, 9.0, 14.0, 11.0, 13.0, 10.5, 12.5]
    b = [v - 1 for v in a]
    c = [v + 5 for v in a]
    wide = pd.DataFrame({"A": a, "B": b, "C": c})
    pairs = pairwise_wilcoxon(wide, "hd95").set_index(["a", "b"])
    assert pairs.loc[("A", "B"), "b_better"] == 8 and pairs.loc[("A", "B"), "a_better"] == 0
    np.testing.assert_allclose(pairs["p_holm"], holm(pairs["p"]))
    assert list(mean_ranks(wide, "hd95")) == [2.0, 1.0, 3.0]


def test_friedman_perfect_agreement():
    # Every patient orders the 3 configurations the same way: chi2 = n (k - 1), Kendall's W = 1.
    n = 5
    wide = pd.DataFrame({"good": np.linspace(0.8, 0.9, n), "mid": np.linspace(0.6, 0.7, n), "bad": np.zeros(n)})
    result = friedman(wide)
    assert result["statistic"] == pytest.approx(n * 2)
    assert result["p"] == pytest.approx(math.exp(-5))  # chi-square with 2 df: sf(x) = exp(-x / 2)
    assert result["kendall_w"] == pytest.approx(1.0)
    assert list(mean_ranks(wide)) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("k", [1, 2])
def test_friedman_needs_three_configurations(k):
    wide = pd.DataFrame({f"c{i}": [0.1, 0.2, 0.3] for i in range(k)})
    result = friedman(wide)
    assert math.isnan(result["p"]) and "3 or more" in result["note"]


def test_describe_worst_case_and_interval():
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, math.nan])
    d = describe(values, n_boot=500)
    assert (d["n"], d["n_missing"]) == (10, 1)
    assert d["min"] == pytest.approx(0.1)
    assert d["p10"] == pytest.approx(0.19)  # numpy's linear interpolation: 0.1 + 0.9 * 0.1
    assert d["mean"] == pytest.approx(0.55) and d["median"] == pytest.approx(0.55)
    assert d["ci_low"] < 0.55 < d["ci_high"]


def test_wide_table_keeps_complete_patients_and_refuses_duplicates():
    table = _long({"A": [0.5, 0.6, math.nan], "B": [0.4, 0.7, 0.8]})
    assert list(wide_table(table, "dice").index) == ["P00", "P01"]
    with pytest.raises(GliomasegError, match="appears twice"):
        wide_table(pd.concat([table, table.iloc[:1]]), "dice")
