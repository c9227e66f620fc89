"""Property-based tests (Hypothesis) of the metrics: bounds, symmetry, identities and the empty-case rules."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gliomaseg.evaluation.metrics import binary_metrics, dice_from_counts, slice_metrics

FAST = settings(max_examples=40, deadline=None)
RATIOS = ("dice", "iou", "precision", "sensitivity", "specificity", "accuracy")


@st.composite
def mask_pairs(draw: st.DrawFn, ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    return draw(arrays(np.bool_, shape)), draw(arrays(np.bool_, shape))


@FAST
@given(pair=st.integers(2, 3).flatmap(lambda n: mask_pairs(n)))
def test_bounds_counts_and_the_dice_iou_identity(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, truth = pair
    m = binary_metrics(pred, truth)
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == pred.size
    assert (m["truth_pixels"], m["pred_pixels"]) == (int(truth.sum()), int(pred.sum()))
    for key in RATIOS:
        assert math.isnan(m[key]) or 0.0 <= m[key] <= 1.0, key
    if m["case"] == "tumour":
        assert math.isclose(m["dice"], 2 * m["iou"] / (1 + m["iou"]), rel_tol=1e-9)
        assert math.isclose(m["dice"], dice_from_counts(m["tp"], m["pred_pixels"], m["truth_pixels"]), rel_tol=1e-9)
    else:  # no truth: overlap metrics are undefined, never a silent 0 or 1
        assert m["case"] == ("false_positive" if pred.any() else "true_negative")
        assert math.isnan(m["dice"]) and math.isnan(m["iou"])


@FAST
@given(pair=mask_pairs())
def test_dice_and_iou_are_symmetric_when_both_masks_are_non_empty(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, truth = pair
    if pred.any() and truth.any():
        a, b = binary_metrics(pred, truth), binary_metrics(truth, pred)
        assert math.isclose(a["dice"], b["dice"]) and math.isclose(a["iou"], b["iou"])
        assert math.isclose(a["precision"], b["sensitivity"])


@FAST
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(2, 12), st.integers(2, 12))))
def test_a_mask_against_itself(mask: np.ndarray) -> None:
    m = binary_metrics(mask, mask)
    if mask.any():
        assert m["dice"] == m["iou"] == m["precision"] == m["sensitivity"] == 1.0 and m["hd95"] == 0.0
    else:
        assert m["case"] == "true_negative" and m["accuracy"] == 1.0
    per_slice = slice_metrics(mask, mask)
    assert (per_slice.loc[per_slice["case"] == "tumour", "dice"] == 1.0).all()
    assert (per_slice["case"] != "false_positive").all()
