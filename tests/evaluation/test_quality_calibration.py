"""Fitting the quality flag: a table of cases in, a calibration that score_signals applies out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.quality_calibration import fit_quality, load_cases, score_cases
from gliomaseg.inference.quality import SIGNALS

REPO = Path(__file__).resolve().parents[2]


def _cases(n_patients: int = 40, seed: int = 0) -> pd.DataFrame:
    """In-domain and shifted cases whose Dice falls as the flip disagreement rises, plus noise signals."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for shift in ("none", "gamma", "noise"):
            disagreement = rng.uniform(0, 0.6)
            rows.append(
                {
                    "patient_id": f"P{p}",
                    "shift": shift,
                    "dice": float(np.clip(0.95 - disagreement * 1.2 + rng.normal(0, 0.08), 0, 1)),
                    "disagreement": disagreement,
                    "log_components": rng.uniform(0, 2),
                    "border_fraction": rng.uniform(0, 0.1),
                    "log_volume": rng.uniform(3, 5),
                    "uncertain_fraction": rng.uniform(0, 1),
                    "in_q50_1": rng.normal(0.4, 0.05) + (0.2 if shift == "gamma" else 0.0),
                }
            )
    return pd.DataFrame(rows)


def test_fit_finds_the_informative_signal_and_sets_the_threshold():
    cases = _cases()
    fitted = fit_quality(cases, target_sensitivity=0.8, n_boot=100)
    cal, ev = fitted["calibration"], fitted["evaluation"]
    assert cal["features"] == list(SIGNALS)
    assert ev["out_of_fold"]["auroc"] > 0.85 and ev["out_of_fold"]["ci_low"] <= ev["out_of_fold"]["auroc"]
    assert ev["sensitivity"] >= 0.8 and ev["n_patients"] == 40
    # the disagreement's coefficient raises the failure's logit; the flag follows the stored threshold
    assert cal["coef"][SIGNALS.index("disagreement")] > 0
    scores = score_cases(cases, cal)
    fail = cases["dice"].to_numpy() < 0.5
    assert scores[fail].mean() < scores[~fail].mean()
    # the reference statistics come from the in-domain cases only
    inside = cases[cases["shift"] == "none"]["in_q50_1"]
    assert cal["reference"]["in_q50_1"][0] == pytest.approx(inside.mean())


def test_nothing_to_calibrate_on_is_refused():
    cases = _cases().assign(dice=0.9)
    with pytest.raises(GliomasegError, match="both below and above"):
        fit_quality(cases, n_boot=10)


def test_load_cases_reads_evaluation_folders(tmp_path):
    cases = _cases(4)
    inside, shifted = cases[cases["shift"] == "none"], cases[cases["shift"] != "none"]
    inside.drop(columns="shift").to_csv(tmp_path / "per_patient.csv", index=False)
    shifted.to_csv(tmp_path / "shifts.csv", index=False)
    loaded = load_cases([tmp_path])
    assert len(loaded) == len(cases) and (loaded["shift"] == "none").sum() == len(inside)
    with pytest.raises(GliomasegError, match="per_patient.csv"):
        load_cases([tmp_path / "nothing"])


@pytest.mark.parametrize(
    ("signals", "with_reference"),
    [
        (["log_volume", "disagreement"], False),  # listed in SIGNALS order, whatever the order given
        (["input_distance", "log_volume", "uncertain_fraction"], True),
    ],
)
def test_fit_on_a_subset_of_the_signals(signals, with_reference):
    cases = _cases()
    fitted = fit_quality(cases, signals=signals, n_boot=50)
    cal = fitted["calibration"]
    assert cal["features"] == [s for s in SIGNALS if s in signals]
    assert len(cal["coef"]) == len(cal["mean"]) == len(signals)
    assert bool(cal["reference"]) == with_reference  # training statistics only for the input distance
    assert 0.0 <= fitted["evaluation"]["out_of_fold"]["auroc"] <= 1.0
    assert np.isfinite(score_cases(cases, cal)).all()


def test_unknown_or_no_signals_are_refused():
    with pytest.raises(GliomasegError, match=r"unknown signal\(s\) \['log_volumes'\].*log_volume"):
        fit_quality(_cases(), signals=["log_volumes"], n_boot=10)
    with pytest.raises(GliomasegError, match="at least one signal"):
        fit_quality(_cases(), signals=[], n_boot=10)


def test_the_script_fits_chosen_signals_and_names_the_valid_ones(tmp_path):
    cases = _cases(20)
    cases[cases["shift"] == "none"].drop(columns="shift").to_csv(tmp_path / "per_patient.csv", index=False)
    cases[cases["shift"] != "none"].to_csv(tmp_path / "shifts.csv", index=False)
    script = [sys.executable, str(REPO / "scripts" / "calibrate_quality.py"), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = tmp_path / "cal.json"
    done = subprocess.run(
        [*script, "--out", str(out), "--signals", "disagreement,log_volume"],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["features"] == ["disagreement", "log_volume"]
    assert json.loads(done.stdout)["signals"] == ["disagreement", "log_volume"]
    typo = subprocess.run(
        [*script, "--out", str(tmp_path / "x.json"), "--signals", "disagrement"],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )
    assert typo.returncode == 2 and "disagrement" in typo.stderr and "uncertain_fraction" in typo.stderr
    assert not (tmp_path / "x.json").exists()
