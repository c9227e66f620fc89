"""``evaluate`` end to end on tiny phantoms with a real (untrained) model file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gliomaseg.checkpoint import BEST_ON_VALIDATION, LAST_EPOCH
from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import save_index
from gliomaseg.data.io import read_image, read_mask
from gliomaseg.data.splits import make_splits, save_splits, split_id
from gliomaseg.evaluation import evaluate
from gliomaseg.evaluation.metrics import binary_metrics
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference import Segmenter

N_PATIENTS = 6  # conftest's phantoms
SIZE = 64


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, phantoms):
    root = tmp_path_factory.mktemp("eval")
    table = index_dataset(phantoms).table
    save_index(table, root / "work" / "index.csv")
    splits = make_splits(table, test_fraction=0.25, val_fraction=0.25, stratify=())
    save_splits(splits, root / "work" / "splits.json")
    return {"root": root, "data": phantoms, "table": table, "splits": splits}


@pytest.fixture(scope="module")
def make_model(model_file, workspace):
    """A model file as training writes it: split id, epoch and (with ``workdir``) the run's settings."""

    def make(path, size=SIZE, workdir=True):
        config = {"workdir": str(workspace["root"] / "work"), "fold": 0} if workdir else {}
        return model_file(path, size=size, split_id=split_id(workspace["splits"], 0), epoch=2, config=config)

    return make


@pytest.fixture(scope="module")
def run(workspace, make_model):
    """A model file in a run folder with a Lightning-style metrics.csv, evaluated on all patients."""
    run_dir = workspace["root"] / "runs" / "unet__bce_dice__fold0"
    ckpt = make_model(run_dir / "best.pt")
    log = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 2, 2],
            "step": [1, 1, 3, 3, 5, 5],
            "train/loss_epoch": [0.9, np.nan, 0.7, np.nan, 0.6, np.nan],
            "val/loss": [np.nan, 0.95, np.nan, 0.8, np.nan, 0.75],
            "val/dice_patient": [np.nan, 0.1, np.nan, 0.3, np.nan, 0.35],
        }
    )
    (run_dir / "logs" / "csv").mkdir(parents=True)
    log.to_csv(run_dir / "logs" / "csv" / "metrics.csv", index=False)
    chosen = workspace["table"]["patient"].iloc[0]
    out = evaluate(ckpt, split="all", out=run_dir / "eval_all", patients=[chosen], progress=False, n_boot=200).out
    return {"ckpt": ckpt, "out": out, "chosen": workspace["table"]["patient_id"].iloc[0]}


def _volume(table, patient_id):
    rows = table[table["patient_id"] == patient_id].sort_values("slice")
    images = np.stack([read_image(p) for p in rows["image_path"]])
    truth = np.stack([read_mask(p) for p in rows["mask_path"]]).astype(bool)
    return images, truth


def _strict_json(path):
    def no_nan(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=no_nan)


def test_outputs_exist_and_are_consistent(run, workspace):
    out, table = run["out"], workspace["table"]
    assert out == run["ckpt"].parent / "eval_all"
    for name in ("summary.json", "per_patient.csv", "per_slice.csv", "report.html"):
        assert (out / name).is_file(), name
    summary = _strict_json(out / "summary.json")
    per_patient = pd.read_csv(out / "per_patient.csv")
    per_slice = pd.read_csv(out / "per_slice.csv")
    assert len(per_patient) == N_PATIENTS == summary["n_patients"]
    assert len(per_slice) == len(table) == summary["n_slices"]
    assert sorted(per_patient["patient_id"]) == sorted(table["patient_id"].unique())
    assert per_patient["n_slices"].sum() == len(table)
    # volume aggregates are over patients, slice aggregates over tumour slices
    for metric in ("dice", "iou", "sensitivity", "accuracy"):
        assert summary["volume"]["metrics"][metric]["mean"] == pytest.approx(per_patient[metric].mean())
    tumour = per_slice[per_slice["case"] == "tumour"]
    assert summary["slice"]["metrics"]["dice"]["mean"] == pytest.approx(tumour["dice"].mean())
    assert summary["slice"]["metrics"]["dice"]["n"] == len(tumour) == int(table["has_tumour"].sum())
    dice = summary["volume"]["metrics"]["dice"]
    assert dice["ci_low"] <= dice["mean"] <= dice["ci_high"]
    # empty-case counts add up and agree with the ground truth in the index
    empty = summary["empty_cases"]
    assert empty["tumour_slices"] + empty["empty_slices"] == len(table)
    assert empty["empty_slices"] == int((~table["has_tumour"]).sum())
    assert empty["empty_slices_false_positive"] == int((per_slice["case"] == "false_positive").sum())
    assert per_patient["n_false_positive_slices"].sum() == empty["empty_slices_false_positive"]
    # settings recorded
    assert summary["checkpoint"]["path"] == str(run["ckpt"])
    assert summary["preprocess"] == {"size": SIZE, "normalisation": "zscore"}
    assert summary["postprocess"] == PostprocessConfig().to_dict()
    assert summary["split"]["name"] == "all"
    assert summary["split"]["matches_checkpoint"] is True
    # the run's splits file is at hand: its train (and validation) patients are named as seen
    assert any("evaluated patients were used to train the model" in w for w in summary["warnings"])
    assert summary["patients"][0]["patient_id"] == per_patient["patient_id"].iloc[0]


def test_figures_and_report(run):
    out = run["out"]
    summary = _strict_json(out / "summary.json")
    figures = out / "figures"
    assert len(list((figures / "gifs").glob("*.gif"))) == N_PATIENTS
    assert (figures / "dice_distribution.png").is_file()
    for label in ("best", "median", "worst"):
        assert list(figures.glob(f"overlay_*{label}*.png")), label
    assert list(figures.glob(f"overlay_chosen*{run['chosen']}.png"))
    # the checkpoint sits in a run folder with metrics.csv, so the learning curves are drawn
    assert (figures / "learning_curves.png").is_file()
    assert "figures/learning_curves.png" in summary["figures"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(summary["figures"])
    assert html.count("data:image/gif;base64,") == N_PATIENTS
    assert run["chosen"] in html


def test_metrics_match_segmenter_output(run, workspace):
    """The CSV's numbers are binary_metrics of the Segmenter's masks at the data's own resolution."""
    per_patient = pd.read_csv(run["out"] / "per_patient.csv").set_index("patient_id")
    per_slice = pd.read_csv(run["out"] / "per_slice.csv")
    seg = Segmenter.from_checkpoint(run["ckpt"], device="cpu", batch_size=32)
    pid = per_patient.index[0]
    images, truth = _volume(workspace["table"], pid)
    pred = seg.predict_volume(images)
    expected = binary_metrics(pred, truth)
    row = per_patient.loc[pid]
    for key in ("tp", "fp", "fn", "tn", "truth_pixels", "pred_pixels"):
        assert row[key] == expected[key], key
    for key in ("dice", "iou", "accuracy", "specificity"):
        assert row[key] == pytest.approx(expected[key], nan_ok=True), key
    first = per_slice[per_slice["patient_id"] == pid].iloc[0]
    assert first["slice"] == 1
    assert first["tp"] + first["fp"] == int(pred[0].sum())
    assert first["truth_pixels"] == int(truth[0].sum())


def test_metrics_at_native_resolution_when_the_model_size_differs(workspace, make_model, tmp_path):
    ckpt = make_model(tmp_path / "small.pt", size=32)
    out = evaluate(ckpt, split="test", out=tmp_path / "ev", figures=False, progress=False, n_boot=50).out
    per_slice = pd.read_csv(out / "per_slice.csv")
    per_patient = pd.read_csv(out / "per_patient.csv")
    summary = _strict_json(out / "summary.json")
    pixels = per_slice[["tp", "fp", "fn", "tn"]].sum(axis=1)
    assert (pixels == SIZE * SIZE).all()
    assert (per_patient[["height", "width"]] == SIZE).all().all()
    assert summary["data"]["resolution"] == [f"{SIZE}x{SIZE}"]
    assert summary["preprocess"]["size"] == 32
    test_patients = workspace["splits"]["test"]
    assert sorted(per_patient["patient_id"]) == sorted(test_patients)
    assert summary["split"]["patients"] == sorted(test_patients)
    assert not summary["warnings"]  # test split, same splits as the checkpoint
    truth = workspace["table"].set_index("patient_id").loc[test_patients, "tumour_pixels"].sum()
    assert per_patient["truth_pixels"].sum() == truth


@pytest.fixture(scope="module")
def baseline(run):
    return pd.read_csv(run["out"] / "per_patient.csv").set_index("patient_id")


@pytest.mark.parametrize(
    "changes",
    [{"threshold": 0.7}, {"min_size": 20}, {"largest_component": True}, {"tta": True}],
    ids=["threshold", "min_size", "largest_component", "tta"],
)
def test_postprocess_switches_are_recorded_and_effective(run, workspace, baseline, tmp_path, changes):
    cfg = PostprocessConfig(**changes)
    out = evaluate(
        run["ckpt"],
        split="all",
        out=tmp_path / "ev",
        postprocess=cfg,
        figures=False,
        progress=False,
        n_boot=50,
    ).out
    summary = _strict_json(out / "summary.json")
    assert summary["postprocess"] == cfg.to_dict()
    per_patient = pd.read_csv(out / "per_patient.csv").set_index("patient_id").loc[baseline.index]
    assert per_patient["pred_pixels"].sum() != baseline["pred_pixels"].sum()
    if not changes.get("tta"):
        # removing pixels only: never more than the plain threshold at 0.5
        assert (per_patient["pred_pixels"] <= baseline["pred_pixels"]).all()
    # and it is exactly what the Segmenter gives with these settings
    seg = Segmenter.from_checkpoint(run["ckpt"], device="cpu", postprocess=cfg, batch_size=32)
    pid = baseline.index[0]
    images, _ = _volume(workspace["table"], pid)
    assert per_patient.loc[pid, "pred_pixels"] == int(seg.predict_volume(images).sum())


def test_refuses_to_overwrite_then_overwrites(run, tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        evaluate(run["ckpt"], split="test", out=out, figures=False, progress=False)
    assert not (out / "summary.json").exists()
    evaluate(run["ckpt"], split="test", out=out, figures=False, progress=False, overwrite=True, n_boot=50)
    assert (out / "summary.json").is_file()
    assert (out / "notes.txt").read_text() == "keep me"


def test_split_mismatch_and_training_patients_are_flagged(run, workspace, tmp_path):
    other = make_splits(workspace["table"], test_fraction=0.25, val_fraction=0.25, stratify=(), seed=7)
    save_splits(other, tmp_path / "other.json")
    out = evaluate(
        run["ckpt"],
        split="train",
        splits=tmp_path / "other.json",
        out=tmp_path / "ev",
        figures=False,
        progress=False,
        n_boot=50,
    ).out
    summary = _strict_json(out / "summary.json")
    assert summary["split"]["split_id"] == split_id(other, 0)
    assert summary["split"]["checkpoint_split_id"] == split_id(workspace["splits"], 0)
    assert summary["split"]["matches_checkpoint"] is False
    text = " ".join(summary["warnings"])
    assert "split mismatch" in text and "training patients" in text
    assert sorted(pd.read_csv(out / "per_patient.csv")["patient_id"]) == other["folds"][0]["train"]
    assert "split mismatch" in (out / "report.html").read_text()


def test_default_out_is_in_the_current_folder_not_beside_the_model(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = evaluate(run["ckpt"], split="test", figures=False, progress=False, n_boot=50).out
    assert out == Path("eval_test") and (tmp_path / "eval_test" / "summary.json").is_file()
    assert not (run["ckpt"].parent / "eval_test").exists()


def _seen_model(model_file, tmp_path, workspace, **meta):
    """A model file that records (or not) the patients it was trained and selected on, without a run folder."""
    return model_file(tmp_path / "m.pt", size=SIZE, split_id="0123456789ab:fold0", **meta)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        # trained on the first patient, epoch chosen on the second: both named
        (
            {"train_patients": [0], "val_patients": [1], "selection": BEST_ON_VALIDATION},
            ["1 of the 6 evaluated patients were used to train", "1 of the 6 evaluated patients selected"],
        ),
        # the last epoch was kept: the validation patients selected nothing
        (
            {"train_patients": [0, 2], "val_patients": [1], "selection": LAST_EPOCH},
            ["2 of the 6 evaluated patients were used to train"],
        ),
        # patients the model never saw: nothing to warn about (it used to claim they were trained on)
        ({"train_patients": ["TCGA_ZZ_9999_20000101"], "val_patients": []}, []),
        # an older file without the record and without its splits file: no claim either way
        ({}, ["does not record its training patients"]),
    ],
    ids=["trained-and-selected", "trained-last-epoch", "unseen", "unknown"],
)
def test_only_patients_the_model_has_seen_are_flagged(model_file, workspace, tmp_path, meta, expected):
    ids = sorted(workspace["table"]["patient_id"].unique())
    named = {k: [ids[i] if isinstance(i, int) else i for i in v] for k, v in meta.items() if k.endswith("_patients")}
    meta = {**meta, **named}
    ckpt = _seen_model(model_file, tmp_path, workspace, **meta)
    summary = evaluate(
        ckpt, split="all", data=workspace["data"], out=tmp_path / "ev", figures=False, progress=False, n_boot=50
    ).summary
    assert len(summary["warnings"]) == len(expected), summary["warnings"]
    for warning, text in zip(summary["warnings"], expected):
        assert text in warning
    assert not any("includes the patients the model was trained" in w for w in summary["warnings"])


def test_index_from_data_when_the_run_has_none(workspace, make_model, tmp_path):
    ckpt = make_model(tmp_path / "m.pt", workdir=False)
    with pytest.raises(ValueError, match="--data"):
        evaluate(ckpt, split="all", out=tmp_path / "ev", figures=False, progress=False)
    with pytest.raises(ValueError, match="splits"):
        evaluate(ckpt, split="test", data=workspace["data"], out=tmp_path / "ev", figures=False, progress=False)
    out = evaluate(
        ckpt, split="all", data=workspace["data"], out=tmp_path / "ev", figures=False, progress=False, n_boot=50
    ).out
    summary = _strict_json(out / "summary.json")
    assert summary["n_patients"] == N_PATIENTS
    assert summary["split"]["split_id"] is None
    assert summary["data"]["index"].startswith("built from")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "holdout"}, "split='holdout'"),
        ({"split": "all", "patients": ["TCGA_XX_0000"]}, "TCGA_XX_0000"),
        ({"split": "test", "splits": "missing.json"}, "no splits file"),
    ],
)
def test_bad_arguments(run, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(run["ckpt"], out=tmp_path / "ev", figures=False, progress=False, **kwargs)


def test_nan_is_null_in_summary(run):
    summary = _strict_json(run["out"] / "summary.json")
    # every phantom patient has tumour, so no volume is a true negative and the FP rate is undefined
    assert summary["volume"]["cases"]["true_negative"] == 0
    assert summary["volume"]["false_positive_rate_on_empty_truth"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in summary["patients"][0].values())


def test_cli_evaluate_overrides_single_postprocess_settings(run, tmp_path, capsys):
    from gliomaseg.cli import main

    out = tmp_path / "cli"
    argv = ["evaluate", "--model", str(run["ckpt"]), "--split", "all", "--out", str(out), "--no-figures"]
    assert main([*argv, "--threshold", "0.7", "--largest-component"]) == 0
    printed = capsys.readouterr().out
    assert "per-patient Dice: mean" in printed and "95% CI" in printed
    assert str(out / "report.html") in printed
    summary = _strict_json(out / "summary.json")
    assert summary["postprocess"] == {
        "threshold": 0.7,
        "min_size": 0,
        "largest_component": True,
        "tta": False,
        "fill_holes": False,
        "component_score": "voxels",
    }
    assert not (out / "figures").exists()
    # a second run into the same folder is refused without --overwrite
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err


def test_predict_on_a_patient_folder_gives_the_masks_evaluate_scored(run, workspace, tmp_path):
    from gliomaseg.inference.predict import predict_inputs

    per_patient = pd.read_csv(run["out"] / "per_patient.csv").set_index("patient_id")
    pid = per_patient.index[1]
    predict_inputs(run["ckpt"], [workspace["data"] / pid], tmp_path / "pred", overlays=False)
    rows = workspace["table"][workspace["table"]["patient_id"] == pid].sort_values("slice")
    masks = np.stack([read_mask(tmp_path / "pred" / pid / f"{pid}_{n}_mask.tif") for n in rows["slice"]])
    truth = np.stack([read_mask(p) for p in rows["mask_path"]])
    scored = binary_metrics(masks.astype(bool), truth.astype(bool))
    for key in ("tp", "fp", "fn", "tn"):
        assert per_patient.loc[pid, key] == scored[key], key


def test_cli_evaluate_takes_an_onnx_model_and_changes_its_stored_postprocessing(run, workspace, tmp_path, capsys):
    from gliomaseg.cli import main
    from gliomaseg.inference.export import export_onnx

    onnx = export_onnx(run["ckpt"], tmp_path / "m.onnx").path
    argv = ["evaluate", "--model", str(onnx), "--data", str(workspace["data"]), "--split", "all"]
    assert main([*argv, "--out", str(tmp_path / "ev"), "--no-figures", "--threshold", "0.7"]) == 0, capsys.readouterr()
    summary = _strict_json(tmp_path / "ev" / "summary.json")
    assert summary["checkpoint"]["backend"] != "pytorch" and summary["postprocess"]["threshold"] == 0.7
    assert summary["postprocess"]["largest_component"] is False  # the rest as stored


def test_shifts_are_scored_beside_in_domain(run, workspace, tmp_path, capsys):
    """``--shift``: every patient under each shift, shifts.csv, a summary section and a report table."""
    from gliomaseg.cli import main

    out = tmp_path / "shifted"
    argv = ["evaluate", "--model", str(run["ckpt"]), "--split", "all", "--out", str(out), "--no-figures"]
    assert main([*argv, "--shift", "rotation", "--shift", "flair_only", "--shift-seed", "3"]) == 0
    assert "shift rotation" in capsys.readouterr().out
    table = pd.read_csv(out / "shifts.csv")
    assert len(table) == 2 * N_PATIENTS and set(table["shift"]) == {"rotation", "flair_only"}
    assert {"dice", "disagreement", "quality_score", "quality_flag", "seed"} <= set(table.columns)
    summary = _strict_json(out / "summary.json")
    section = summary["shifts"]
    assert section["seed"] == 3 and list(section["per_shift"]) == ["rotation", "flair_only"]
    in_domain = pd.read_csv(out / "per_patient.csv").set_index("patient_id")["dice"]
    for name, row in section["per_shift"].items():
        dice = table[table["shift"] == name].set_index("patient_id")["dice"]
        assert row["mean"] == pytest.approx(dice.mean())
        assert row["drop"] == pytest.approx((dice - in_domain.reindex(dice.index)).mean())
    assert "Distribution shifts" in (out / "report.html").read_text()
    # the same seed gives the same shifted volumes, hence the same Dice
    again = evaluate(
        run["ckpt"],
        split="all",
        out=tmp_path / "again",
        figures=False,
        progress=False,
        shifts=["rotation"],
        shift_seed=3,
        n_boot=50,
    )
    first = table[table["shift"] == "rotation"]["dice"].to_numpy()
    np.testing.assert_allclose(pd.read_csv(again.out / "shifts.csv")["dice"].to_numpy(), first)


def test_unknown_shift_is_refused_before_any_work(run, tmp_path):
    with pytest.raises(ValueError, match="unknown shift 'blurry'.*rotation"):
        evaluate(run["ckpt"], split="all", out=tmp_path / "x", shifts=["blurry"], progress=False)
    assert not (tmp_path / "x").exists()
