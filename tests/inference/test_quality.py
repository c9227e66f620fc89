"""Quality signals, score and flag of a predicted case, with real (untrained) model files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.errors import GliomasegError
from gliomaseg.inference import load_segmenter
from gliomaseg.inference.quality import input_statistics, quality_for_case, quality_signals, score_signals

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
    with pytest.raises(GliomasegError, match="cannot read"):
        quality_for_case(seg, image, proba, mask, calibration=tmp_path / "missing.json")


def test_an_ensemble_uses_its_members_not_a_flip(model_file, case):
    image, _ = case
    a, b = model_file(size=64, bias=10.0), model_file(size=64, bias=-10.0)
    seg = load_segmenter([a, b])
    probas = seg.member_probas(image)
    proba = np.mean(probas, axis=0)
    row = quality_for_case(seg, image, proba, proba > 0.5, member_probas=probas, calibration=CAL)
    assert row["disagreement"] == pytest.approx(1.0, abs=1e-3)  # one says everything, the other nothing
