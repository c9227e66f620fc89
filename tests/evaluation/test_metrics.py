"""Tests for gliomaseg.evaluation.metrics: hand-computed masks, empty-case convention, HD95, bootstrap summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from gliomaseg.evaluation.aggregate import summarise, summarise_table
from gliomaseg.evaluation.metrics import (
    METRIC_KEYS,
    binary_metrics,
    dice_from_counts,
    slice_metrics,
)

OVERLAP = ("dice", "iou", "precision", "sensitivity", "hd95")


def square(top: int, left: int, size: int, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


def cube(z: int, y: int, x: int, size: int, shape: tuple[int, int, int] = (12, 24, 24)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[z : z + size, y : y + size, x : x + size] = True
    return m


# Each row: pred, truth, expected counts (tp, fp, fn, tn) on a 10 x 10 image.
HAND_CASES = {
    # 4x4 squares overlapping in a 3x3 block.
    "offset_squares": (square(3, 3, 4), square(2, 2, 4), (9, 7, 7, 77)),
    # 2x2 prediction inside a 4x4 tumour.
    "inside": (square(3, 3, 2), square(2, 2, 4), (4, 0, 12, 84)),
    # 4x4 prediction containing a 2x2 tumour.
    "containing": (square(2, 2, 4), square(3, 3, 2), (4, 12, 0, 84)),
    "identical": (square(2, 2, 4), square(2, 2, 4), (16, 0, 0, 84)),
}


@pytest.mark.parametrize("name", list(HAND_CASES))
def test_hand_computed_overlap_metrics(name: str) -> None:
    pred, truth, (tp, fp, fn, tn) = HAND_CASES[name]
    m = binary_metrics(pred, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert m["case"] == "tumour"
    assert m["truth_pixels"] == tp + fn and m["pred_pixels"] == tp + fp
    expected = {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "accuracy": (tp + tn) / 100,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_offset_squares_literal_values() -> None:
    # Written out once as literals so the formula above cannot hide a shared mistake.
    m = binary_metrics(square(3, 3, 4), square(2, 2, 4))
    assert m["dice"] == pytest.approx(0.5625)
    assert m["iou"] == pytest.approx(9 / 23)
    assert m["precision"] == pytest.approx(0.5625)
    assert m["sensitivity"] == pytest.approx(0.5625)
    assert m["specificity"] == pytest.approx(77 / 84)
    assert m["accuracy"] == pytest.approx(0.86)


def test_result_keys_and_types() -> None:
    m = binary_metrics(square(3, 3, 4), square(2, 2, 4))
    assert list(m) == list(METRIC_KEYS)
    assert isinstance(m["case"], str)
    assert all(isinstance(m[k], int) for k in ("tp", "fp", "fn", "tn", "truth_pixels", "pred_pixels"))
    assert isinstance(m["dice"], float)


# pred, truth, expected case, expected accuracy (= specificity here), expected defined overlap metrics.
EMPTY_CASES = {
    "both_empty": (np.zeros((10, 10), bool), np.zeros((10, 10), bool), "true_negative", 1.0),
    "false_positive": (square(0, 0, 2), np.zeros((10, 10), bool), "false_positive", 0.96),
}


@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_empty_truth_cases(name: str) -> None:
    pred, truth, case, acc = EMPTY_CASES[name]
    m = binary_metrics(pred, truth)
    assert m["case"] == case
    for key in OVERLAP:
        assert math.isnan(m[key]), key
    assert m["accuracy"] == pytest.approx(acc)
    assert m["specificity"] == pytest.approx(acc)


def test_missed_tumour_convention() -> None:
    m = binary_metrics(np.zeros((10, 10), bool), square(2, 2, 4))
    assert m["case"] == "tumour"
    assert (m["dice"], m["iou"], m["sensitivity"], m["precision"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(m["hd95"])
    assert m["specificity"] == 1.0
    assert m["accuracy"] == pytest.approx(0.84)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("axis", [0, 1])
def test_hd95_offset_squares_is_offset(k: int, axis: int) -> None:
    truth = square(8, 8, 8, (32, 32))
    pred = np.roll(truth, k, axis=axis)
    assert binary_metrics(pred, truth)["hd95"] == pytest.approx(k, abs=1e-5)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [((5, 5), (5, 8), 3.0), ((5, 5), (8, 9), 5.0), ((0, 0), (0, 0), 0.0)],
)
def test_hd95_points(a: tuple[int, int], b: tuple[int, int], expected: float) -> None:
    pred = np.zeros((12, 12), bool)
    truth = np.zeros((12, 12), bool)
    pred[a] = True
    truth[b] = True
    assert binary_metrics(pred, truth)["hd95"] == pytest.approx(expected, abs=1e-5)


def test_hd95_volume_is_3d() -> None:
    # Cubes offset in-plane by 2 voxels: 3D HD95 = 2.
    truth = cube(2, 6, 6, 8)
    assert binary_metrics(np.roll(truth, 2, axis=2), truth)["hd95"] == pytest.approx(2.0, abs=1e-5)
    # Points 4 slices apart: the through-plane distance counts one slice as one pixel.
    pred = np.zeros((8, 6, 6), bool)
    truth = np.zeros((8, 6, 6), bool)
    pred[1, 3, 3] = True
    truth[5, 3, 3] = True
    assert binary_metrics(pred, truth)["hd95"] == pytest.approx(4.0, abs=1e-5)


def reference_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """Independent HD95: edges by erosion, distances by a Euclidean distance transform, numpy percentile."""
    edge_p = pred ^ ndimage.binary_erosion(pred)
    edge_t = truth ^ ndimage.binary_erosion(truth)
    d_pt = ndimage.distance_transform_edt(~edge_t)[edge_p]
    d_tp = ndimage.distance_transform_edt(~edge_p)[edge_t]
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def blob(seed: int, shape: tuple[int, ...], sigma: float = 3.0, level: float = 0.6) -> np.ndarray:
    noise = np.random.default_rng(seed).random(shape)
    smooth = ndimage.gaussian_filter(noise, sigma)
    return smooth > np.quantile(smooth, level)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_matches_scipy_reference(seed: int) -> None:
    pred, truth = blob(seed, (48, 48)), blob(seed + 100, (48, 48))
    # Tolerance 1e-4 pixels: MONAI works in float32, the reference in float64.
    assert binary_metrics(pred, truth)["hd95"] == pytest.approx(reference_hd95(pred, truth), abs=1e-4)


def test_hd95_volume_matches_scipy_reference() -> None:
    pred, truth = blob(5, (6, 24, 24), sigma=2.0), blob(6, (6, 24, 24), sigma=2.0)
    assert binary_metrics(pred, truth)["hd95"] == pytest.approx(reference_hd95(pred, truth), abs=1e-4)


def make_stack() -> tuple[np.ndarray, np.ndarray]:
    """Five 10 x 10 slices: hit, missed tumour, true negative, false positive, partial hit."""
    pred = np.zeros((5, 10, 10), bool)
    truth = np.zeros((5, 10, 10), bool)
    pred[0], truth[0] = square(3, 3, 4), square(2, 2, 4)
    truth[1] = square(5, 5, 3)
    pred[3] = square(0, 0, 2)
    pred[4], truth[4] = square(3, 3, 2), square(2, 2, 4)
    return pred, truth


def test_slice_metrics_rows_match_binary_metrics() -> None:
    pred, truth = make_stack()
    df = slice_metrics(pred, truth)
    assert list(df["slice"]) == [0, 1, 2, 3, 4]
    assert list(df["case"]) == ["tumour", "tumour", "true_negative", "false_positive", "tumour"]
    for s in range(5):
        single = binary_metrics(pred[s], truth[s])
        for key in METRIC_KEYS:
            a, b = df.loc[s, key], single[key]
            if isinstance(b, float) and math.isnan(b):
                assert math.isnan(a), (s, key)
            else:
                assert a == pytest.approx(b), (s, key)


def test_volume_counts_equal_sum_over_slices() -> None:
    pred, truth = make_stack()
    df = slice_metrics(pred, truth)
    vol = binary_metrics(pred, truth)
    for key in ("tp", "fp", "fn", "tn", "truth_pixels", "pred_pixels"):
        assert vol[key] == int(df[key].sum()), key
    # Volume Dice pools the counts: 2 * (9 + 4) / (pred 16+0+0+4+4 + truth 16+9+0+0+16) = 26 / 65.
    assert vol["dice"] == pytest.approx(26 / 65)
    assert vol["dice"] == pytest.approx(dice_from_counts(df["tp"].sum(), df["pred_pixels"].sum(), vol["truth_pixels"]))
    assert vol["accuracy"] == pytest.approx(df["accuracy"].mean())  # equal slice sizes


def test_input_kinds_agree() -> None:
    pred, truth = make_stack()
    ref = slice_metrics(pred, truth)
    for p, t in [
        (torch.from_numpy(pred), torch.from_numpy(truth)),
        (pred.astype(np.uint8), truth.astype(np.float32)),
    ]:
        pd.testing.assert_frame_equal(slice_metrics(p, t), ref)


@pytest.mark.parametrize(
    ("pred", "truth", "error", "match"),
    [
        (np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8), ValueError, "255"),
        (np.full((4, 4), 0.7), np.zeros((4, 4)), ValueError, "not binary"),
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool), ValueError, "shapes differ"),
        (np.zeros(4, bool), np.zeros(4, bool), ValueError, "2D or 3D"),
        ([[0, 1]], np.zeros((1, 2), bool), TypeError, "list"),
    ],
)
def test_bad_inputs(pred: object, truth: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        binary_metrics(pred, truth)


def test_slice_metrics_needs_3d() -> None:
    with pytest.raises(ValueError, match="3D"):
        slice_metrics(np.zeros((4, 4), bool), np.zeros((4, 4), bool))


@pytest.mark.parametrize(
    ("counts", "expected"),
    [((5, 10, 10), 0.5), ((0, 0, 10), 0.0), ((0, 0, 0), math.nan), ((0, 3, 0), math.nan), ((3, 3, 3), 1.0)],
)
def test_dice_from_counts(counts: tuple[int, int, int], expected: float) -> None:
    got = dice_from_counts(*counts)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, nan_ok=True)


def test_dice_from_counts_vectorised_and_checked() -> None:
    got = dice_from_counts(np.array([5, 0]), np.array([10, 0]), np.array([10, 0]))
    np.testing.assert_allclose(got, [0.5, np.nan])
    with pytest.raises(ValueError, match="exceeds"):
        dice_from_counts(5, 3, 10)
    with pytest.raises(ValueError, match=">= 0"):
        dice_from_counts(-1, 3, 10)


def test_summarise_basic_values() -> None:
    s = summarise([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["n_missing"] == 0
    assert s["mean"] == pytest.approx(2.5)
    assert s["median"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert 1.0 <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= 4.0


def test_summarise_ignores_nan_and_reports_n() -> None:
    s = summarise([1.0, math.nan, 3.0])
    assert (s["n"], s["n_missing"], s["mean"]) == (2, 1, 2.0)
    empty = summarise([math.nan])
    assert empty["n"] == 0 and empty["n_missing"] == 1
    assert all(math.isnan(empty[k]) for k in ("mean", "median", "std", "ci_low", "ci_high"))
    one = summarise([0.7])
    assert (one["ci_low"], one["ci_high"]) == (0.7, 0.7) and math.isnan(one["std"])


def test_summarise_seeded_and_contains_mean() -> None:
    x = np.random.default_rng(3).random(50)
    a, b = summarise(x, seed=1), summarise(x, seed=1)
    assert a == b
    assert summarise(x, seed=2)["ci_low"] != a["ci_low"]
    assert a["ci_low"] < a["mean"] < a["ci_high"]


def test_summarise_ci_width_matches_normal_theory() -> None:
    x = np.random.default_rng(0).normal(size=400)
    s = summarise(x, n_boot=2000, ci=0.95, seed=0)
    half_width = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert (s["ci_high"] - s["ci_low"]) / 2 == pytest.approx(half_width, rel=0.1)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_boot": 0}, "n_boot"), ({"ci": 1.0}, "ci")])
def test_summarise_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        summarise([1.0, 2.0], **kwargs)


def test_summarise_table_counts_and_exclusions() -> None:
    pred, truth = make_stack()
    df = slice_metrics(pred, truth)
    out = summarise_table(df, n_boot=200)
    assert out["n_cases"] == 5
    assert out["cases"] == {"tumour": 3, "true_negative": 1, "false_positive": 1}
    assert out["n_tumour_empty_prediction"] == 1
    assert out["false_positive_rate_on_empty_truth"] == pytest.approx(0.5)
    dice = out["metrics"]["dice"]
    # Tumour rows only: 0.5625 (hit), 0 (missed), 0.4 (partial).
    assert dice["n"] == 3 and dice["mean"] == pytest.approx((0.5625 + 0.0 + 0.4) / 3)
    hd = out["metrics"]["hd95"]
    assert hd["n"] == 2 and hd["n_missing"] == 1
    assert out["metrics"]["accuracy"]["n"] == 5
    json.dumps(out)  # must serialise for summary.json


def test_summarise_table_groups_and_errors() -> None:
    pred, truth = make_stack()
    df = slice_metrics(pred, truth)
    df["patient"] = ["a", "a", "a", "b", "b"]
    out = summarise_table(df, columns=("dice",), group="patient", n_boot=100)
    assert set(out["groups"]) == {"a", "b"}
    assert out["groups"]["a"]["cases"] == {"tumour": 2, "true_negative": 1, "false_positive": 0}
    assert out["groups"]["b"]["metrics"]["dice"]["mean"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not in the table"):
        summarise_table(df, columns=("dice", "nope"))
