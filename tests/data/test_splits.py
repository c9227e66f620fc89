"""Tests of patient-level stratified splits and the splits.json round trip."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from gliomaseg.data.splits import (
    SPLITS_FORMAT,
    load_splits,
    make_splits,
    part_patients,
    save_splits,
    split_id,
)


def _table(site_counts: dict[str, int], slices: int = 2, seed: int = 0) -> pd.DataFrame:
    """Index-like table: ``slices`` rows per patient, random tumour pixels per slice."""
    rng = np.random.default_rng(seed)
    rows = []
    for site, n in site_counts.items():
        for k in range(n):
            pid = f"TCGA_{site}_{1000 + k}_20000101"
            for s in range(1, slices + 1):
                px = int(rng.integers(0, 500))
                rows.append({"patient_id": pid, "site": site, "slice": s, "tumour_pixels": px})
    return pd.DataFrame(rows).sort_values(["patient_id", "slice"]).reset_index(drop=True)


def _all_parts(splits: dict, fold: int = 0) -> list[set[str]]:
    f = splits["folds"][fold]
    return [set(splits["test"]), set(f["train"]), set(f["val"])]


@pytest.fixture
def table() -> pd.DataFrame:
    # Like the real data: large sites, and one site with a single patient (EZ).
    return _table({"CS": 12, "DU": 20, "FG": 10, "HT": 16, "EZ": 1})


@pytest.mark.parametrize("n_folds", [1, 5])
def test_parts_disjoint_and_complete(table: pd.DataFrame, n_folds: int) -> None:
    splits = make_splits(table, n_folds=n_folds, seed=3)
    everyone = set(table["patient_id"])
    assert splits["index_patients"] == len(everyone) == 59
    assert len(splits["folds"]) == n_folds
    for fold in range(n_folds):
        test, train, val = _all_parts(splits, fold)
        assert not (test & train) and not (test & val) and not (train & val)
        assert test | train | val == everyone
    assert len(splits["test"]) == round(0.15 * 59)  # 9
    assert set(splits["strata"]) == everyone


def test_holdout_sizes(table: pd.DataFrame) -> None:
    splits = make_splits(table, test_fraction=0.15, val_fraction=0.15)
    assert len(splits["test"]) == 9
    assert len(splits["folds"][0]["val"]) == 9
    assert len(splits["folds"][0]["train"]) == 59 - 18


def test_kfold_every_patient_in_exactly_one_val(table: pd.DataFrame) -> None:
    splits = make_splits(table, n_folds=4, seed=1)
    non_test = set(table["patient_id"]) - set(splits["test"])
    vals = [p for f in splits["folds"] for p in f["val"]]
    assert sorted(vals) == sorted(non_test)
    for f in splits["folds"]:
        assert set(f["train"]) == non_test - set(f["val"])


def test_no_test_part(table: pd.DataFrame) -> None:
    splits = make_splits(table, test_fraction=0, n_folds=3)
    assert splits["test"] == []
    assert part_patients(splits, "test") == []
    assert part_patients(splits, "all") == sorted(set(table["patient_id"]))


def test_deterministic_per_seed(table: pd.DataFrame) -> None:
    a = make_splits(table, seed=7)
    b = make_splits(table, seed=7)
    c = make_splits(table, seed=8)
    assert a == b
    assert a["test"] != c["test"] or a["folds"] != c["folds"]
    assert split_id(a) == split_id(b) != split_id(c)


def test_lists_sorted(table: pd.DataFrame) -> None:
    splits = make_splits(table, n_folds=3)
    assert splits["test"] == sorted(splits["test"])
    for f in splits["folds"]:
        assert f["train"] == sorted(f["train"]) and f["val"] == sorted(f["val"])


def test_site_stratification_exact_when_site_only() -> None:
    # 20 + 20 patients, 10 % test -> stratified by site gives exactly 2 + 2 in test, 4 + 4 in val.
    t = _table({"AA": 20, "BB": 20})
    splits = make_splits(t, test_fraction=0.1, val_fraction=0.2, stratify=("site",), seed=5)
    assert splits["stratify"] == ["site"]
    site = {p: p.split("_")[1] for p in t["patient_id"]}
    test_sites = pd.Series([site[p] for p in splits["test"]]).value_counts().to_dict()
    val_sites = pd.Series([site[p] for p in splits["folds"][0]["val"]]).value_counts().to_dict()
    assert test_sites == {"AA": 2, "BB": 2}
    assert val_sites == {"AA": 4, "BB": 4}


def test_sites_roughly_balanced_with_default_strata(table: pd.DataFrame) -> None:
    splits = make_splits(table, n_folds=1, seed=2)
    site = {p: p.split("_")[1] for p in table["patient_id"]}
    totals = pd.Series(site).value_counts()
    in_test = pd.Series([site[p] for p in splits["test"]]).value_counts()
    for s in ("CS", "DU", "HT"):
        expected = 0.15 * totals[s]
        assert abs(in_test.get(s, 0) - expected) <= 1.5, (s, in_test.get(s, 0), expected)


def test_small_site_merged_into_other(table: pd.DataFrame) -> None:
    splits = make_splits(table, stratify=("site",))
    ez = "TCGA_EZ_1000_20000101"
    assert splits["strata"][ez] == "other"
    # EZ alone (1 patient) is too small for 3 parts, so the next smallest site (FG) joins it.
    fg = [p for p in splits["strata"] if "_FG_" in p]
    assert {splits["strata"][p] for p in fg} == {"other"}
    assert {splits["strata"][p] for p in splits["strata"] if "_DU_" in p} == {"DU"}
    assert any(ez in part for part in _all_parts(splits))


def test_degrades_when_strata_too_small() -> None:
    # 4 + 4 patients: site x burden cells have ~1 patient, too few for test/train/val.
    t = _table({"AA": 4, "BB": 4})
    splits = make_splits(t, test_fraction=0.25, val_fraction=0.25)
    assert splits["stratify"] in (["site"], ["burden"], [])
    assert splits["stratify"] != ["site", "burden"]
    test, train, val = _all_parts(splits)
    assert len(test) == 2 and len(val) == 2 and len(train) == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"test_fraction": 1.0}, "test_fraction=1.0"),
        ({"test_fraction": -0.1}, "test_fraction=-0.1"),
        ({"val_fraction": -0.1}, "val_fraction=-0.1"),
        ({"test_fraction": 0.5, "val_fraction": 0.5}, "must be < 1"),
        ({"n_folds": 0}, "n_folds=0"),
        ({"n_folds": 2.5}, "n_folds=2.5"),
        ({"stratify": ("site", "scanner")}, "scanner"),
        ({"n_folds": 100}, "too few"),
    ],
)
def test_bad_arguments(table: pd.DataFrame, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        make_splits(table, **kwargs)


def test_val_fraction_zero_trains_every_non_test_patient(table: pd.DataFrame) -> None:
    splits = make_splits(table, test_fraction=0.15, val_fraction=0.0)
    (fold,) = splits["folds"]
    assert fold["val"] == []
    assert sorted(fold["train"] + splits["test"]) == sorted(table["patient_id"].unique())
    everyone = make_splits(table, test_fraction=0.0, val_fraction=0.0)
    assert everyone["test"] == [] and len(everyone["folds"][0]["train"]) == table["patient_id"].nunique()


def test_missing_columns() -> None:
    with pytest.raises(ValueError, match="tumour_pixels"):
        make_splits(pd.DataFrame({"patient_id": ["a"], "site": ["X"]}))


def test_save_load_roundtrip_and_refuse_overwrite(table: pd.DataFrame, tmp_path) -> None:
    path = tmp_path / "splits.json"
    a = make_splits(table, seed=0)
    save_splits(a, path)
    assert load_splits(path) == a
    assert json.loads(path.read_text())["format"] == SPLITS_FORMAT
    save_splits(a, path)  # identical content: fine
    b = make_splits(table, seed=1)
    with pytest.raises(FileExistsError, match="written once and reused.*--overwrite"):
        save_splits(b, path)
    assert load_splits(path) == a
    save_splits(b, path, overwrite=True)
    assert load_splits(path) == b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits.json"]  # no temp files left


def _corrupt(splits: dict, how: str) -> dict:
    s = json.loads(json.dumps(splits))
    f = s["folds"][0]
    if how == "train_val":
        f["val"].append(f["train"][0])
        return s
    if how == "test_train":
        f["train"].append(s["test"][0])
        return s
    s["format"] = "something/0"
    return s


@pytest.mark.parametrize(
    ("how", "needle"),
    [("train_val", "both train and val"), ("test_train", "test patient"), ("format", "something/0")],
)
def test_load_rejects_bad_json(table: pd.DataFrame, tmp_path, how: str, needle: str) -> None:
    splits = make_splits(table)
    bad = _corrupt(splits, how)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=needle) as err:
        load_splits(path)
    if how == "train_val":
        assert splits["folds"][0]["train"][0] in str(err.value)
    if how == "test_train":
        assert splits["test"][0] in str(err.value)


def test_split_id_format_and_stability(table: pd.DataFrame, tmp_path) -> None:
    splits = make_splits(table, n_folds=3)
    sid = split_id(splits, 2)
    assert re.fullmatch(r"[0-9a-f]{12}:fold2", sid)
    save_splits(splits, tmp_path / "s.json")
    assert split_id(load_splits(tmp_path / "s.json"), 2) == sid
    with pytest.raises(ValueError, match="fold=3"):
        split_id(splits, 3)


def test_part_patients(table: pd.DataFrame) -> None:
    splits = make_splits(table, n_folds=2)
    assert part_patients(splits, "val", fold=1) == splits["folds"][1]["val"]
    assert part_patients(splits, "all", fold=1) == sorted(set(table["patient_id"]))
    with pytest.raises(ValueError, match="part='dev'"):
        part_patients(splits, "dev")
