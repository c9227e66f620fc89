"""Fold ensembles: averaged probabilities in Segmenter, predict, evaluate, the ONNX export and the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from gliomaseg import __version__
from gliomaseg.cli import main
from gliomaseg.data.io import read_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation import evaluate
from gliomaseg.evaluation.postprocess import postprocess_volume
from gliomaseg.inference import Segmenter, load_segmenter, model_algorithm, read_volume
from gliomaseg.inference.export import export_onnx
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.segmenter import MODEL_FILE


@pytest.fixture(scope="module")
def members(model_file) -> list[Path]:
    """Two real U-Nets that differ (other seeds, non-trivial BatchNorm)."""
    return [model_file(randomise_bn=True, seed=1), model_file(randomise_bn=True, seed=2)]


@pytest.fixture(scope="module")
def volume(phantoms: Path) -> np.ndarray:
    patient = sorted(p for p in phantoms.iterdir() if p.is_dir())[0]
    return read_volume(patient)


def test_ensemble_probabilities_are_the_hand_computed_average(members, volume):
    a, b = (Segmenter.from_checkpoint(m, graph_fusion=False).predict_proba(volume) for m in members)
    assert np.abs(a - b).max() > 1e-3  # the members really differ
    ensemble = load_segmenter(members, graph_fusion=False)
    assert len(ensemble.members) == 2 and ensemble.backend.startswith("ensemble of 2")
    np.testing.assert_allclose(ensemble.predict_proba(volume), (a + b) / 2, atol=1e-6)
    mask = ensemble.predict_volume(volume)
    np.testing.assert_array_equal(mask, postprocess_volume((a + b) / 2, ensemble.postprocess))


def test_ensemble_algorithm_hashes_its_members_in_any_order(members):
    forward = load_segmenter(members, graph_fusion=False)
    backward = load_segmenter(members[::-1], graph_fusion=False)
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in members)
    joined = hashlib.sha256("".join(digests).encode()).hexdigest()[:12]
    expected = ("gliomaseg ensemble of 2 (unet)", f"sha256:{joined}, gliomaseg {__version__}")
    assert model_algorithm(forward) == model_algorithm(backward) == expected
    assert MODEL_FILE not in forward.meta  # the first member's file is not the ensemble's
    assert [m[MODEL_FILE]["sha256"] for m in forward.meta["ensemble"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in members
    ]


def test_ensemble_tta_follows_the_ensemble(members, volume):
    plain = [Segmenter.from_checkpoint(m, graph_fusion=False).with_postprocess(tta=True) for m in members]
    expected = (plain[0].predict_proba(volume) + plain[1].predict_proba(volume)) / 2
    ensemble = load_segmenter(members, graph_fusion=False).with_postprocess(tta=True)
    assert all(m.postprocess.tta for m in ensemble.members)
    np.testing.assert_allclose(ensemble.predict_proba(volume), expected, atol=1e-6)


def test_one_member_is_no_ensemble(members):
    assert load_segmenter([members[0]]).members == ()
    with pytest.raises(GliomasegError, match="at least two"):
        Segmenter.ensemble([load_segmenter(members[0])])


def test_predict_with_two_models_writes_the_averaged_masks(members, phantoms, tmp_path, volume):
    patient = sorted(p for p in phantoms.iterdir() if p.is_dir())[0]
    predict_inputs(members, [patient], tmp_path / "out", overlays=False)
    expected = load_segmenter(members).predict_volume(volume)
    written = sorted((tmp_path / "out" / patient.name).glob("*_mask.tif"), key=lambda p: int(p.stem.split("_")[-2]))
    np.testing.assert_array_equal(np.stack([read_mask(p) for p in written]), expected)


def test_evaluate_compares_the_ensemble_with_each_member(members, phantoms, tmp_path):
    summary = evaluate(members, data=phantoms, split="all", out=tmp_path / "ev", figures=False, progress=False).summary
    ens = summary["ensemble"]
    assert [m["checkpoint"] for m in ens["members"]] == [str(m.resolve()) for m in members]
    dice = [r["dice"] for r in summary["patients"] if r["dice"] is not None]
    assert ens["ensemble_dice_mean"] == pytest.approx(np.mean(dice))
    singles = [
        evaluate(m, data=phantoms, split="all", out=tmp_path / f"m{k}", figures=False, progress=False).summary
        for k, m in enumerate(members)
    ]
    for member, single in zip(ens["members"], singles):
        assert member["dice_mean"] == pytest.approx(single["volume"]["metrics"]["dice"]["mean"])
    assert ens["gain_over_mean_member"] == pytest.approx(
        ens["ensemble_dice_mean"] - np.mean([m["dice_mean"] for m in ens["members"]])
    )
    assert "Ensemble vs its members" in (tmp_path / "ev" / "report.html").read_text()


def test_onnx_export_of_an_ensemble_matches_the_pytorch_ensemble(members, volume, tmp_path):
    result = export_onnx(members, tmp_path / "ens.onnx")
    assert result.max_abs_diff < 1e-3
    onnx_seg = load_segmenter(result.path)
    assert len(onnx_seg.meta["ensemble"]) == 2
    pytorch = load_segmenter(members, bf16=False).predict_proba(volume)
    np.testing.assert_allclose(onnx_seg.predict_proba(volume), pytorch, atol=2e-4)


def test_cli_predict_and_evaluate_take_several_models(members, phantoms, tmp_path, capsys):
    patient = sorted(p for p in phantoms.iterdir() if p.is_dir())[0]
    models = [arg for m in members for arg in ("--model", str(m))]
    argv = ["predict", *models, str(patient), "--out", str(tmp_path / "p"), "--no-overlays"]
    assert main(argv) == 0
    assert (tmp_path / "p" / "cases.csv").is_file()
    argv = ["evaluate", *models, "--data", str(phantoms), "--split", "all", "--no-figures"]
    assert main([*argv, "--out", str(tmp_path / "ev")]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "ev" / "summary.json").read_text())["ensemble"]["members"]) == 2
