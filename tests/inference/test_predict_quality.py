"""``predict``'s quality columns: computed from the signals the calibration lists, and only those.

The segmenters are real (untrained) U-Nets; their forward passes are counted by wrapping the real
``predict_proba``, so a calibration without the flip disagreement is seen to cost no second pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.cli import main
from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.inference import Segmenter, load_segmenter, read_volume
from gliomaseg.inference.outputs import CASES_COLUMNS
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.quality import QUALITY_COLUMNS, quality_for_case
from gliomaseg.inference.quality_calibrations import quality_calibration

#: A calibration on the flip disagreement and the predicted volume (threshold set per test).
WITH_FLIP = {
    "features": ["disagreement", "log_volume"],
    "mean": [0.2, 3.0],
    "scale": [0.1, 1.0],
    "coef": [1.5, -1.0],
    "intercept": -1.0,
    "threshold": 0.5,
}
#: The same without the disagreement: nothing but the one forward pass prediction makes anyway.
NO_FLIP = {
    "features": ["input_distance", "log_components", "border_fraction", "log_volume", "uncertain_fraction"],
    "mean": [1.0, 0.7, 0.0, 3.0, 0.3],
    "scale": [0.5, 0.4, 1.0, 1.0, 0.2],
    "coef": [0.7, 0.1, 0.0, -1.0, 1.3],
    "intercept": -1.0,
    "threshold": 0.5,
    "reference": {"in_q50_1": [0.4, 0.1], "in_head_1": [0.45, 0.1]},
}


def _nifti(path: Path, slices: int, seed: int = 0) -> Path:
    volume, _ = synthesise_volume(np.random.default_rng(seed), slices, 48)
    nib.save(nib.Nifti1Image(np.moveaxis(volume[..., 1], 0, 2).astype(np.int16), np.eye(4)), path)
    return path


def _counted(seg: Segmenter) -> list[int]:
    """Count the real network's slices: the batch size of each call of its logits function (copies of the
    segmenter, e.g. predict's field-of-view one, share that function)."""
    calls: list[int] = []
    real = seg.logits_fn

    def logits_fn(batch):
        calls.append(len(batch))
        return real(batch)

    seg.logits_fn = logits_fn
    return calls


@pytest.mark.parametrize(
    ("calibration", "quality", "slices", "passes"),
    [
        (WITH_FLIP, True, 6, 2),  # the flipped input's pass for the disagreement
        (NO_FLIP, True, 6, 1),  # a calibration without it: no second pass
        (WITH_FLIP, False, 6, 1),  # --no-quality
        (WITH_FLIP, True, 1, 1),  # a single slice is not scored: no second pass either
    ],
)
def test_forward_passes_follow_the_calibration(tmp_path, model_file, calibration, quality, slices, passes):
    seg = load_segmenter(model_file(size=48, quality=calibration))
    calls = _counted(seg)
    table = predict_inputs(seg, [_nifti(tmp_path / "v.nii.gz", slices)], tmp_path / "out", quality=quality)
    assert sum(calls) == slices * passes  # every pass runs each slice through the network once
    written = pd.read_csv(tmp_path / "out" / "cases.csv", keep_default_na=False)
    assert list(written.columns) == [*CASES_COLUMNS, *(QUALITY_COLUMNS if quality else ())]
    if quality and slices > 1:
        score = table.loc[0, "quality_score"]
        assert 0.0 <= score <= 1.0
        assert table.loc[0, "quality_flag"] == ("ok" if score >= calibration["threshold"] else "check")
    elif quality:  # one slice: blank, not a guess from a calibration fitted on volumes
        assert np.isnan(table.loc[0, "quality_score"]) and table.loc[0, "quality_flag"] == ""
        assert written.loc[0, "quality_score"] == "" and written.loc[0, "quality_flag"] == ""


@pytest.mark.parametrize(("threshold", "flag"), [(0.0, "ok"), (1.0, "check")])
def test_the_flag_is_the_calibration_threshold(tmp_path, model_file, threshold, flag):
    seg = load_segmenter(model_file(size=48, quality={**NO_FLIP, "threshold": threshold}))
    inputs = [_nifti(tmp_path / f"v{k}.nii.gz", 5, seed=k) for k in range(2)]
    predict_inputs(seg, inputs, tmp_path / "out")
    written = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert written["quality_flag"].tolist() == [flag, flag]
    assert written["quality_score"].between(0.0, 1.0).all()


def test_the_columns_are_those_evaluate_computes(tmp_path, model_file):
    """predict's score equals quality_for_case's with every signal (as evaluate records them)."""
    seg = load_segmenter(model_file(size=48, quality=WITH_FLIP)).with_field_of_view()  # predict's, for a NIfTI
    path = _nifti(tmp_path / "v.nii.gz", 6)
    table = predict_inputs(seg, [path], tmp_path / "out")
    flair = read_volume(path)  # what predict read: a FLAIR-only NIfTI fills the three channels
    proba = seg.predict_proba(flair)
    full = quality_for_case(seg, flair, proba, seg.predict_volume(flair), all_signals=True)
    assert set(full) > {"disagreement", "input_distance", "in_q50_1", "uncertain_fraction"}
    assert table.loc[0, "quality_score"] == pytest.approx(full["quality_score"], abs=1e-3)


def test_cli_quality_on_and_off(tmp_path, model_file, capsys, caplog):
    model = model_file(size=48, quality=NO_FLIP)
    scan = _nifti(tmp_path / "v.nii.gz", 4)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "s.png")
    args = ["predict", "--model", str(model), str(scan), str(tmp_path / "s.png")]
    with caplog.at_level("INFO", logger="gliomaseg.inference.predict"):
        assert main([*args, "--out", str(tmp_path / "on")]) == 0
    assert "quality_flag" in capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records]
    assert any("v (nifti)" in m and ("quality" in m and (": ok" in m or ": check" in m)) for m in logged), logged
    assert any("s (slice)" in m and "quality not scored" in m for m in logged), logged
    assert main([*args, "--out", str(tmp_path / "off"), "--no-quality"]) == 0
    assert "quality_flag" not in capsys.readouterr().out
    written = pd.read_csv(tmp_path / "off" / "cases.csv")
    assert not set(QUALITY_COLUMNS) & set(written.columns)


def test_resume_keeps_the_quality_the_earlier_table_wrote(tmp_path, model_file):
    seg = load_segmenter(model_file(size=48, quality=NO_FLIP))
    inputs = [_nifti(tmp_path / f"v{k}.nii.gz", 4, seed=k) for k in range(2)]
    first = predict_inputs(seg, inputs, tmp_path / "out")
    calls = _counted(seg)
    again = predict_inputs(seg, inputs, tmp_path / "out", resume=True)  # every case skipped: no pass at all
    assert calls == []
    pd.testing.assert_frame_equal(again[list(QUALITY_COLUMNS)], first[list(QUALITY_COLUMNS)])
    (tmp_path / "out" / "cases.csv").unlink()  # a stopped run: no table yet, so nothing to keep
    blank = predict_inputs(seg, inputs, tmp_path / "out", resume=True)
    assert blank["quality_flag"].tolist() == ["", ""] and blank["quality_score"].isna().all()


@pytest.mark.parametrize(
    ("given", "passes"),
    [
        ("flip", 2),  # the bundled two-pass calibration: the flipped input's pass
        ("one-pass", 1),  # the bundled default, asked for by name
        ("file", 2),  # a JSON file of the user's (here one on the flip disagreement)
    ],
)
def test_a_calibration_asked_for_replaces_the_models(tmp_path, model_file, given, passes):
    seg = load_segmenter(model_file(size=48, quality=NO_FLIP))  # the model's own: one pass
    calls = _counted(seg)
    if given == "file":
        given = tmp_path / "mine.json"
        given.write_text(json.dumps({**WITH_FLIP, "threshold": 1.0}))  # every case below it: check
    table = predict_inputs(seg, [_nifti(tmp_path / "v.nii.gz", 6)], tmp_path / "out", quality=given)
    assert sum(calls) == 6 * passes
    expected = quality_calibration(None, given)
    assert table.loc[0, "quality_flag"] == ("ok" if table.loc[0, "quality_score"] >= expected["threshold"] else "check")
    if isinstance(given, Path):
        assert table.loc[0, "quality_flag"] == "check"


def test_an_unknown_calibration_is_refused_before_any_input(tmp_path, model_file, capsys):
    scan = _nifti(tmp_path / "v.nii.gz", 4)
    args = ["predict", "--model", str(model_file(size=48)), str(scan), "--out", str(tmp_path / "out")]
    assert main([*args, "--quality-calibration", "flipp"]) == 2
    err = capsys.readouterr().err
    assert "flipp" in err and "one-pass, flip" in err
    assert not (tmp_path / "out").exists()
