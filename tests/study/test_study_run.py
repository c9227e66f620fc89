"""A tiny study on phantoms end to end: outputs, skipping finished runs, resuming, two shards + collect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gliomaseg.cli import main
from gliomaseg.study.folder import open_study
from gliomaseg.study.runner import run_one

# 2 configurations x 2 folds of a 4-feature network trained 1 epoch at 64x64: about 2 s a run.
TINY = {
    "folds": 2,
    "split": {"test_fraction": 0.15, "seed": 0},
    "base": {"preset": "demo", "features": 4, "epochs": 1, "size": 64},
    "axes": {"arch": ["unet", "resunet"]},
}


def write_study(folder: Path, data: Path, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": str(data), **TINY}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, phantoms) -> Path:
    """A study run in one go through the CLI; returns its folder."""
    config = write_study(tmp_path_factory.mktemp("one"), phantoms)
    assert main(["study", str(config)]) == 0
    return config.parent / "tiny"


def _per_patient(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "per_patient.csv")
    return table.sort_values(["config", "patient_id"]).reset_index(drop=True)


def test_outputs(finished):
    study = open_study(finished)
    splits = json.loads((finished / "splits.json").read_text())
    non_test = sorted(p for fold in splits["folds"] for p in fold["val"])
    per_patient = _per_patient(finished)
    # Every non-test patient has exactly one out-of-fold score per configuration; no test patient is scored.
    for config in ("unet", "resunet"):
        assert sorted(per_patient.loc[per_patient["config"] == config, "patient_id"]) == non_test
    assert not set(per_patient["patient_id"]) & set(splits["test"])
    results = pd.read_csv(finished / "results.csv")
    assert sorted(results["config"]) == ["resunet", "unet"] and list(results["rank"]) == [1, 2]
    assert (results["dice_n"] == len(non_test)).all() and (results["n_parameters"] > 0).all()
    for config, rows in per_patient.groupby("config"):
        row = results.set_index("config").loc[config]
        assert row["dice_mean"] == pytest.approx(rows["dice"].mean())
        assert row["dice_min"] == pytest.approx(rows["dice"].min())
    comparisons = pd.read_csv(finished / "comparisons.csv")
    assert sorted(comparisons["metric"]) == ["dice", "hd95", "iou"] and (comparisons["n"] == len(non_test)).all()
    text = (finished / "results.md").read_text()
    assert "Wilcoxon" in text and "last.pt" in text and "4 of 4 runs finished" in text
    report = (finished / "report.html").read_text()
    assert "data:image/png;base64" in report and "src='figures" not in report
    assert len(list((finished / "figures" / "curves").glob("*.png"))) == 4
    record = json.loads((study.run_dir(study.config.runs()[0]) / "result.json").read_text())
    assert record["checkpoint"] == "last.pt" and record["split_id"].startswith(study.split_id)


def test_finished_runs_are_skipped(finished, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained or evaluated again")

    monkeypatch.setattr("gliomaseg.training.trainer.train", refuse)
    monkeypatch.setattr("gliomaseg.evaluation.evaluator.evaluate", refuse)
    study = open_study(finished)
    before = {spec.name: (study.run_dir(spec) / "result.json").stat().st_mtime_ns for spec in study.config.runs()}
    for spec in study.config.runs():
        assert run_one(study, spec) is not None
    after = {spec.name: (study.run_dir(spec) / "result.json").stat().st_mtime_ns for spec in study.config.runs()}
    assert after == before


def test_interrupted_run_resumes(finished, monkeypatch):
    import gliomaseg.training.trainer as trainer

    study = open_study(finished)
    spec = study.config.runs()[0]
    run_dir = study.run_dir(spec)
    old = json.loads((run_dir / "result.json").read_text())
    # As if the process died after Lightning's last checkpoint but before the result was written.
    (run_dir / "result.json").unlink()
    (run_dir / "trained.json").unlink()
    calls = []
    real_train = trainer.train

    def spy(cfg, **kwargs):
        calls.append(kwargs)
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(trainer, "train", spy)
    new = run_one(study, spec)
    assert calls and calls[0]["resume"] is True
    assert [p["dice"] for p in new["patients"]] == [p["dice"] for p in old["patients"]]


def test_two_shards_then_collect_equal_one_run(tmp_path, phantoms, finished):
    config = write_study(tmp_path, phantoms)
    assert main(["study", str(config), "--shard", "1/2"]) == 0
    assert main(["study", str(config), "--collect"]) == 0
    partial = (tmp_path / "tiny" / "results.md").read_text()
    assert "2 of 4 runs finished" in partial and "Unfinished runs (2)" in partial
    assert main(["study", str(config), "--shard", "2/2"]) == 0
    assert main(["study", str(config), "--collect"]) == 0
    pd.testing.assert_frame_equal(_per_patient(tmp_path / "tiny"), _per_patient(finished))
    one = pd.read_csv(finished / "results.csv").drop(columns=["train_minutes_per_fold", "train_minutes_total"])
    two = pd.read_csv(tmp_path / "tiny" / "results.csv").drop(columns=["train_minutes_per_fold", "train_minutes_total"])
    pd.testing.assert_frame_equal(one, two)


def test_collect_without_a_study_folder_fails(tmp_path, phantoms, capsys):
    config = write_study(tmp_path, phantoms, name="never")
    assert main(["study", str(config), "--collect"]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_postprocess_sweep_scores_every_variant_out_of_fold(finished):
    from gliomaseg.study.postprocess_sweep import VARIANTS

    config_file = finished.parent / "tiny.yaml"
    assert main(["study", str(config_file), "--sweep-postprocess", "unet"]) == 0
    long = pd.read_csv(finished / "postprocess_unet.csv")
    assert set(long["config"]) == set(VARIANTS)
    # every non-test patient is scored once per variant, by the fold that held it out
    per_variant = long.groupby("config")["patient_id"].nunique()
    assert (per_variant == per_variant.iloc[0]).all() and per_variant.iloc[0] == len(_per_patient(finished)) // 2
    lcc = long[long["config"] == "largest component (voxels)"].set_index("patient_id")["dice"]
    results = _per_patient(finished)
    study_scores = results[results["config"] == "unet"].set_index("patient_id")["dice"]
    # the demo preset stores threshold 0.5 + the largest component by voxels: the study's own scores
    np.testing.assert_allclose(lcc.sort_index().to_numpy(), study_scores.sort_index().to_numpy(), atol=1e-6)
    assert "Paired Wilcoxon" in (finished / "postprocess_unet.md").read_text()
