"""``radiogenomics`` end to end on phantoms: truth masks, ensembles, out-of-fold study models, resume, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from gliomaseg.cli import main
from gliomaseg.data.index import index_dataset
from gliomaseg.data.io import read_image
from gliomaseg.data.splits import make_splits, save_splits
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.radiogenomics import run_radiogenomics
from gliomaseg.radiogenomics.shape import FEATURES, PAPER_FEATURES
from gliomaseg.radiogenomics.tables import CLUSTER_COLUMNS
from gliomaseg.study import ensemble_predictor


@pytest.fixture(scope="module")
def table(phantoms):
    return index_dataset(phantoms).table


@pytest.fixture(scope="module")
def truth_run(phantoms, tmp_path_factory):
    return run_radiogenomics(phantoms, tmp_path_factory.mktemp("rg") / "truth", n_boot=200, progress=False)


@pytest.fixture(scope="module")
def constant_models(model_file):
    return {name: model_file(bias=b) for name, b in (("all", 10.0), ("none", -10.0))}


def test_truth_features_are_joined_with_data_csv(truth_run, table, phantoms):
    features = truth_run.features
    assert len(features) == table["patient_id"].nunique() and set(features["masks"]) == {"truth"}
    # The volume is the patient's tumour pixel count; clusters match data.csv by the folder name minus its date.
    pixels = table.groupby("patient_id")["tumour_pixels"].sum()
    np.testing.assert_array_equal(features.set_index("patient_id")["volume"], pixels.loc[features["patient_id"]])
    csv = pd.read_csv(phantoms / "data.csv", dtype=str).set_index("Patient")
    for row in features.itertuples():
        assert row.patient == row.patient_id.rsplit("_", 1)[0]
        for c in CLUSTER_COLUMNS:
            value = csv.loc[row.patient, c]
            assert (pd.isna(value) and pd.isna(getattr(row, c))) or value == getattr(row, c)
    # Missing cluster values are counted, not dropped silently.
    missing = truth_run.summary["missing_clusters"]["per_cluster"]
    for c in CLUSTER_COLUMNS:
        assert missing[c]["n_missing"] == int(csv[c].isna().sum())


def test_associations_count_their_tests(truth_run):
    assoc = truth_run.associations
    assert len(assoc) == len(FEATURES) * len(CLUSTER_COLUMNS)
    paper = assoc[assoc["family"] == "paper"]
    assert set(paper["feature"]) == set(PAPER_FEATURES)
    assert (paper["n_tests"] == len(PAPER_FEATURES) * len(CLUSTER_COLUMNS)).all()
    tested = paper["fisher_p"].notna()
    np.testing.assert_allclose(
        paper.loc[tested, "fisher_p_bonferroni"], np.minimum(1, paper.loc[tested, "fisher_p"] * 21), rtol=1e-9
    )
    missing = truth_run.summary["missing_clusters"]["per_cluster"]
    for r in paper.itertuples():
        assert r.n == missing[r.cluster]["n_with_value"]
    rna = assoc.set_index(["feature", "cluster"])["paper"]
    assert rna["bevr", "RNASeqCluster"] == "p < 0.0002" and rna["margin_fluctuation", "RNASeqCluster"] == "p < 0.005"
    assert truth_run.summary["tests"] == {"truth": {"descriptive": 42, "paper": 21}}


def test_outputs_are_written(truth_run):
    out = truth_run.out
    for name in ("features.csv", "associations.csv", "auc.csv", "summary.json", "radiogenomics.md", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "agreement.csv").exists()  # no predicted masks
    assert len(list((out / "figures").glob("box_truth_*.png"))) == len(FEATURES)
    md = (out / "radiogenomics.md").read_text()
    assert "p < 0.0002" in md and "Bonferroni over the 21 tests" in md
    assert (out / "report.html").read_text().count("<img") == len(FEATURES)
    assert json.loads((out / "summary.json").read_text())["data"]["n_patients"] == len(truth_run.features)


def test_refuses_a_used_folder_and_resumes_from_the_cache(truth_run, phantoms):
    out = truth_run.out
    with pytest.raises(OutputExistsError, match="--resume"):
        run_radiogenomics(phantoms, out, progress=False)
    pid = truth_run.features["patient_id"].iloc[0]
    cached = out / "cache" / "truth" / f"{pid}.json"
    record = json.loads(cached.read_text())
    record["bevr"] = 0.123  # a resumed run must take cached patients as they are
    cached.write_text(json.dumps(record))
    few = {"n_boot": 50, "figures": False, "progress": False, "clusters": ["RNASeqCluster"]}
    resumed = run_radiogenomics(phantoms, out, resume=True, **few)
    assert resumed.features.set_index("patient_id").loc[pid, "bevr"] == 0.123
    with pytest.raises(GliomasegError, match="other settings"):
        run_radiogenomics(phantoms, out, resume=True, spacing=(3.0, 1.0, 1.0), progress=False)
    fresh = run_radiogenomics(phantoms, out, overwrite=True, **few)
    assert fresh.features.set_index("patient_id").loc[pid, "bevr"] != 0.123


@pytest.mark.parametrize(("members", "full"), [(("all", "all", "none"), True), (("all", "none", "none"), False)])
def test_ensemble_averages_probabilities(members, full, constant_models, table):
    predict, info = ensemble_predictor([constant_models[m] for m in members], device="cpu")
    rows = table[table["patient_id"] == table["patient_id"].iloc[0]].sort_values("slice")
    mask = predict(np.stack([read_image(p) for p in rows["image_path"]]))
    assert mask.shape == (len(rows), 64, 64) and info["ensemble"]
    assert mask.all() if full else not mask.any()


@pytest.fixture(scope="module")
def study(table, constant_models, tmp_path_factory):
    """A 2-fold study: fold 0's model marks everything tumour, fold 1's nothing."""
    root = tmp_path_factory.mktemp("study")
    splits = make_splits(table, test_fraction=0.2, n_folds=2, stratify=())
    save_splits(splits, root / "splits.json")
    for k, name in enumerate(("all", "none")):
        (root / "runs" / f"cfg__fold{k}").mkdir(parents=True)
        (root / "runs" / f"cfg__fold{k}" / "best.pt").write_bytes(constant_models[name].read_bytes())
    return root, splits


def test_out_of_fold_masks_come_from_the_fold_that_held_the_patient_out(study, phantoms, tmp_path, table):
    root, splits = study
    result = run_radiogenomics(
        phantoms, tmp_path / "oof", study=root, config="cfg", n_boot=50, figures=False, clusters=["COCCluster"]
    )
    pred = result.features[result.features["masks"] == "predicted"].set_index("patient_id")
    fold0, fold1 = splits["folds"][0]["val"], splits["folds"][1]["val"]
    assert set(pred.index) == set(fold0) | set(fold1)
    assert (pred.loc[fold0, "fold"] == 0).all() and (pred.loc[fold1, "fold"] == 1).all()
    sizes = table.groupby("patient_id").size() * 64 * 64
    np.testing.assert_array_equal(pred.loc[fold0, "volume"], sizes.loc[fold0])  # whole volume
    assert pred.loc[fold1, "volume"].isna().all()  # empty masks: no features
    s = result.summary
    assert s["patients_without_prediction"] == sorted(splits["test"])
    assert s["patients_with_empty_mask"]["predicted"] == sorted(fold1)
    assert s["prediction"]["kind"] == "out-of-fold"
    assert len(result.agreement) == len(FEATURES) and (tmp_path / "oof" / "agreement.csv").is_file()
    assert ", ".join(sorted(splits["test"])) in (tmp_path / "oof" / "radiogenomics.md").read_text()


def test_a_missing_fold_model_is_named(study, phantoms, tmp_path):
    root, _ = study
    with pytest.raises(GliomasegError, match="other__fold0"):
        run_radiogenomics(phantoms, tmp_path / "x", study=root, config="other", progress=False)


def test_cli(phantoms, tmp_path, constant_models, capsys):
    out = tmp_path / "cli"
    argv = ["radiogenomics", str(phantoms), "--out", str(out), "--no-figures", "--n-boot", "50"]
    argv += ["--clusters", "RNASeqCluster,CNCluster"]
    assert main([*argv, "--model", str(constant_models["all"])]) == 0
    printed = capsys.readouterr().out
    assert "masks: both" in printed and "radiogenomics.md" in printed
    assert set(pd.read_csv(out / "features.csv")["masks"]) == {"truth", "predicted"}
    assert main([*argv[:2], "--out", str(tmp_path / "y"), "--masks", "predicted"]) == 2
    assert "needs a model" in capsys.readouterr().err
    features = pd.read_csv(out / "features.csv").pivot(index="patient_id", columns="masks", values="volume")
    agree = pd.read_csv(out / "agreement.csv").set_index("feature")
    assert agree.loc["volume", "bias"] == pytest.approx((features["predicted"] - features["truth"]).mean())
    assert math.isnan(agree.loc["bevr", "pearson"])  # every predicted mask is the whole box: constant ratio


@pytest.mark.real
def test_real_patients_are_matched_with_their_clusters(lgg_unpack, tmp_path):
    data = lgg_unpack(3, tmp_path / "kaggle_3m")
    result = run_radiogenomics(data, tmp_path / "out", n_boot=20, figures=False, progress=False)
    features = result.features
    assert len(features) == 3 and features["RNASeqCluster"].notna().any()
    assert ((features["bevr"] > 0) & (features["bevr"] <= 1)).all()
    assert (features["angular_sd"] > 0).all() and (features["margin_fluctuation"] > 0).all()
