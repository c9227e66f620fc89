"""Quality signals, score and flag of a predicted case, with real (untrained) model files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.errors import GliomasegError
from gliomaseg.inference import load_segmenter
from gliomaseg.inference.quality import (
    SIGNALS,
    calibration_signals,
    input_statistics,
    probability_signals,
    quality_for_case,
    quality_signals,
    score_case,
    score_signals,
    unscored_reason,
)

CAL = {
    "reference": {"in_q50_1": [0.4, 0.1]},
    "features": ["disagreement", "input_distance"],
    "mean": [0.1, 1.0],
    "scale": [0.1, 1.0],
    "coef": [2.0, 1.0],
    "intercept": -1.0,
    "threshold": 0.5,
}


@pytest.fixture(scope="module")
def case():
    image, mask = synthesise_volume(np.random.default_rng(1), 5, size=64)
    return image, mask.astype(bool)


def test_score_is_the_stored_logistic_model():
    signals = {"disagreement": 0.3, "in_q50_1": 0.6}  # z = (2, 1) -> logit 2*2 + 1*1 - 1 = 4
    out = score_signals(signals, CAL)
    assert out["input_distance"] == pytest.approx(2.0)  # |0.6 - 0.4| / 0.1
    assert out["quality_score"] == pytest.approx(1 - 1 / (1 + math.exp(-4.0)))
    assert out["quality_flag"] == "check"
    calm = score_signals({"disagreement": 0.0, "in_q50_1": 0.4}, CAL)  # z = (-1, -1) -> logit -4
    assert calm["quality_score"] == pytest.approx(1 - 1 / (1 + math.exp(4.0))) and calm["quality_flag"] == "ok"


def test_signals_of_a_mask():
    proba = np.zeros((4, 32, 32), np.float32)
    proba[1:3, 10:20, 10:20] = 0.9
    proba[1, 0:3, 0:3] = 0.6  # a second component, on the border
    mask = proba > 0.5
    s = quality_signals(np.zeros((4, 32, 32, 3), np.uint8), proba, mask, other_probas=[proba])
    # soft Dice of a map with itself is sum(p^2) / sum(p): its unsure voxels count as disagreement
    assert s["disagreement"] == pytest.approx(1 - (proba**2).sum() / proba.sum())
    assert s["log_components"] == pytest.approx(math.log1p(2))
    assert s["border_fraction"] == pytest.approx(8 / mask.sum())  # the 3x3 corner but (2, 2) is within 2 px
    assert s["log_volume"] == pytest.approx(math.log10(1 + mask.sum()))
    other = np.zeros_like(proba)
    zeros = np.zeros((4, 32, 32, 3), np.uint8)
    assert quality_signals(zeros, proba, mask, other_probas=[other])["disagreement"] == pytest.approx(1.0)


def test_input_statistics_see_flair_copies(case):
    image, _ = case
    flair_only = np.repeat(image[..., 1:2], 3, axis=-1)
    assert input_statistics(flair_only)["corr_pre_flair"] == pytest.approx(1.0)
    assert input_statistics(image)["corr_pre_flair"] < 0.999


def test_quality_for_case_with_a_real_model(model_file, case, tmp_path):
    image, _ = case
    seg = load_segmenter(model_file(size=64))
    proba = seg.predict_proba(image)
    mask = seg.predict_volume(image)
    row = quality_for_case(seg, image, proba, mask, calibration=CAL)
    assert 0.0 <= row["disagreement"] <= 1.0 and 0.0 < row["quality_score"] < 1.0
    assert row["quality_flag"] in ("ok", "check")
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(CAL))
    assert quality_for_case(seg, image, proba, mask, calibration=path)["quality_score"] == pytest.approx(
        row["quality_score"]
    )
    with pytest.raises(GliomasegError, match="no such file; give a JSON file or one of: one-pass, flip"):
        quality_for_case(seg, image, proba, mask, calibration=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GliomasegError, match="cannot read"):
        quality_for_case(seg, image, proba, mask, calibration=tmp_path / "bad.json")


def test_an_ensemble_uses_its_members_not_a_flip(model_file, case):
    image, _ = case
    a, b = model_file(size=64, bias=10.0), model_file(size=64, bias=-10.0)
    seg = load_segmenter([a, b])
    probas = seg.member_probas(image)
    proba = np.mean(probas, axis=0)
    row = quality_for_case(seg, image, proba, proba > 0.5, member_probas=probas, calibration=CAL)
    assert row["disagreement"] == pytest.approx(1.0, abs=1e-3)  # one says everything, the other nothing


# ------------------------------------------------------------------ only the signals a calibration uses
NO_FLIP = {**CAL, "features": ["input_distance", "log_volume"], "coef": [1.0, -1.0]}


@pytest.mark.parametrize(
    ("calibration", "all_signals", "expected"),
    [
        (CAL, False, {"disagreement", "in_q50_1"}),
        (NO_FLIP, False, {"log_volume", "in_q50_1"}),
        (NO_FLIP, True, set(SIGNALS) - {"input_distance"} | {"in_q50_1", "in_corr_pre_flair"}),
    ],
)
def test_only_the_calibrations_signals_are_computed(model_file, case, calibration, all_signals, expected):
    image, _ = case
    seg = load_segmenter(model_file(size=64))
    proba = seg.predict_proba(image)
    row = quality_for_case(seg, image, proba, proba > 0.5, calibration=calibration, all_signals=all_signals)
    computed = set(row) - {"input_distance", "quality_score", "quality_flag"}
    assert expected <= computed
    if not all_signals:
        assert computed - {k for k in computed if k.startswith("in_")} <= set(calibration["features"])
    assert 0.0 < row["quality_score"] < 1.0 and row["quality_flag"] in ("ok", "check")


def test_score_case_reuses_the_probability_signals(model_file, case):
    """The web page keeps probability_signals while the post-processing changes: same score as in one go."""
    image, _ = case
    seg = load_segmenter(model_file(size=64))
    proba = seg.predict_proba(image)
    base = probability_signals(seg, image, proba, signals=calibration_signals(CAL))
    for threshold in (0.3, 0.5, 0.7):
        mask = proba > threshold
        assert score_case(base, mask, CAL)["quality_score"] == pytest.approx(
            quality_for_case(seg, image, proba, mask, calibration=CAL)["quality_score"]
        )


def test_the_box_gives_the_whole_volumes_signals():
    """Components and uncertain band come from the box where p > 0.2: the same as over the whole volume."""
    proba = np.zeros((9, 40, 40), np.float32)
    proba[2:4, 5:9, 30:35] = 0.9  # two components before post-processing, an uncertain rim around one
    proba[6, 20:25, 3:6] = 0.6
    proba[1:5, 4:10, 29:36] = np.maximum(proba[1:5, 4:10, 29:36], 0.3)
    mask = proba > 0.5
    s = quality_signals(np.zeros((9, 40, 40, 3), np.uint8), proba, mask)
    assert s["log_components"] == pytest.approx(math.log1p(2))
    assert s["uncertain_fraction"] == pytest.approx(((proba > 0.2) & (proba < 0.8)).sum() / mask.sum())
    empty = quality_signals(np.zeros((9, 40, 40, 3), np.uint8), proba * 0, mask & False)
    assert empty["log_components"] == 0.0 and empty["uncertain_fraction"] == 0.0 and empty["log_volume"] == 0.0


def test_input_statistics_do_not_depend_on_the_layout(case):
    image, _ = case
    turned = np.ascontiguousarray(image.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # same values, another layout
    assert input_statistics(turned) == input_statistics(image)


def test_unknown_signals_and_single_slices():
    with pytest.raises(GliomasegError, match=r"unknown signal\(s\) \['flip'\].*disagreement, input_distance"):
        calibration_signals({**CAL, "features": ["flip"]})
    assert "one slice" in unscored_reason(np.zeros((1, 8, 8, 3), np.uint8), CAL)
    assert unscored_reason(np.zeros((2, 8, 8, 3), np.uint8), CAL) == ""
    assert "no quality calibration" in unscored_reason(np.zeros((2, 8, 8, 3), np.uint8), None)


def test_input_statistics_are_those_of_the_window_the_network_saw(model_file):
    """With the field-of-view window, a head in a wide canvas has the statistics of the same head framed
    tightly (the calibration's are kaggle_3m's framing); without it, the empty canvas changes them."""
    volume = synthesise_volume(np.random.default_rng(3), 6, 64)[0]
    canvas = np.zeros((6, 200, 200, 3), np.uint8)
    canvas[:, 120:184, 20:84] = volume
    seg = load_segmenter(model_file(size=48)).with_field_of_view()
    wanted = ("input_distance",)
    framed = probability_signals(seg, volume, seg.predict_proba(volume), signals=wanted)
    wide = probability_signals(seg, canvas, seg.predict_proba(canvas), signals=wanted)
    plain = seg.with_field_of_view(False)
    unwindowed = probability_signals(plain, canvas, plain.predict_proba(canvas), signals=wanted)
    assert framed.keys() == wide.keys() and any(k.startswith("in_") for k in framed)
    for key in framed:
        assert wide[key] == pytest.approx(framed[key], abs=0.02), key
    assert unwindowed["in_head_1"] < 0.5 * framed["in_head_1"]  # the canvas's background counted as input
