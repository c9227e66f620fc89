"""Indexing datasets: layouts, the table's columns and values, validation errors, save/load, summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.data.index import IndexResult, index_dataset
from gliomaseg.data.index_table import INDEX_COLUMNS, load_index, save_index, summarise_index
from gliomaseg.data.io import write_image, write_mask

CSV_HEADER = "Patient,RNASeqCluster,age_at_initial_pathologic,death01\n"


def _slice(folder: Path, stem: str, *, tumour: int = 0, missing: str = "", size: int = 8, ext: str = ".tif"):
    """Write ``stem.ext`` (channels differ unless ``missing``) and its mask with ``tumour`` pixels set."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
    if missing in ("pre", "both"):
        img[..., 0] = img[..., 1]
    if missing in ("post", "both"):
        img[..., 2] = img[..., 1]
    mask = np.zeros((size, size), np.uint8)
    mask.flat[:tumour] = 1
    write_image(folder / f"{stem}{ext}", img)
    write_mask(folder / f"{stem}_mask{ext}", mask)


def _kaggle(root: Path) -> Path:
    """Two CS patients (slices 1, 2, 10; the second lacks pre-contrast), one DU patient, and data.csv."""
    a, b, c = "TCGA_CS_4942_19970222", "TCGA_CS_5393_19990606", "TCGA_DU_7013_19860523"
    for n, tumour in [(10, 3), (2, 5), (1, 0)]:
        _slice(root / a, f"{a}_{n}", tumour=tumour)
    for n in (1, 2):
        _slice(root / b, f"{b}_{n}", missing="pre", tumour=0)
    _slice(root / c, f"{c}_1", missing="post", tumour=7)
    # c has no data.csv row; TCGA_XX_0000 has no folder; a blank field becomes NaN.
    (root / "data.csv").write_text(CSV_HEADER + "TCGA_CS_4942,1,44,1\nTCGA_CS_5393,,39,0\nTCGA_XX_0000,2,50,0\n")
    return root


def test_kaggle_layout_table(tmp_path: Path) -> None:
    res = index_dataset(_kaggle(tmp_path / "kaggle_3m"))
    assert isinstance(res, IndexResult) and res.skipped == []
    t = res.table
    assert list(t.columns) == [*INDEX_COLUMNS, "RNASeqCluster", "age_at_initial_pathologic", "death01"]
    assert t["patient_id"].tolist() == ["TCGA_CS_4942_19970222"] * 3 + ["TCGA_CS_5393_19990606"] * 2 + [
        "TCGA_DU_7013_19860523"
    ]
    assert t["patient"].tolist()[:4] == ["TCGA_CS_4942"] * 3 + ["TCGA_CS_5393"]
    assert t["site"].tolist() == ["CS"] * 5 + ["DU"]
    assert t["slice"].tolist() == [1, 2, 10, 1, 2, 1]  # natural order: 2 before 10
    assert t["tumour_pixels"].tolist() == [0, 5, 3, 0, 0, 7]
    assert t["has_tumour"].tolist() == [False, True, True, False, False, True]
    assert t["has_pre"].tolist() == [True] * 3 + [False] * 2 + [True]
    assert t["has_post"].tolist() == [True] * 5 + [False]
    assert t["sequences"].tolist() == ["pre+flair+post"] * 3 + ["flair+post"] * 2 + ["pre+flair"]
    assert (t["height"] == 8).all() and (t["width"] == 8).all()
    first = Path(t["image_path"][0])
    assert first.is_absolute() and first.name == "TCGA_CS_4942_19970222_1.tif"
    assert Path(t["mask_path"][0]).name == "TCGA_CS_4942_19970222_1_mask.tif"
    # data.csv left join: values, blank -> NaN, no row -> NaN.
    assert t["age_at_initial_pathologic"].tolist()[:5] == [44, 44, 44, 39, 39]
    assert t["RNASeqCluster"].isna().tolist() == [False] * 3 + [True] * 3
    assert np.isnan(t["death01"].iloc[5])
    assert t["slice"].dtype == np.int64 and t["has_tumour"].dtype == bool and t["has_pre"].dtype == bool


def test_all_zero_slices_do_not_make_a_sequence_missing(tmp_path: Path) -> None:
    # Patient P: one blank slice (all channels 0, so pre == FLAIR there) and one normal slice.
    write_image(tmp_path / "P" / "P_1.png", np.zeros((4, 4, 3), np.uint8))
    write_mask(tmp_path / "P" / "P_1_mask.png", np.zeros((4, 4), np.uint8))
    _slice(tmp_path / "P", "P_2", ext=".png")
    # Patient Q: only blank slices; nothing shows a sequence is missing, so all count as present.
    write_image(tmp_path / "Q" / "Q_1.png", np.zeros((4, 4, 3), np.uint8))
    write_mask(tmp_path / "Q" / "Q_1_mask.png", np.zeros((4, 4), np.uint8))
    t = index_dataset(tmp_path).table
    assert t["sequences"].tolist() == ["pre+flair+post"] * 3
    assert t["site"].tolist() == ["unknown"] * 3
    assert t["patient"].tolist() == ["P", "P", "Q"]


def test_flat_png_folder_uses_prefix_as_patient(tmp_path: Path) -> None:
    for name, n in [("alice", 3), ("alice", 1), ("bob_scan", 12), ("bob_scan", 2)]:
        _slice(tmp_path, f"{name}_{n}", ext=".png", tumour=n)
    t = index_dataset(tmp_path).table
    assert list(zip(t["patient_id"], t["slice"])) == [
        ("alice", 1),
        ("alice", 3),
        ("bob_scan", 2),
        ("bob_scan", 12),
    ]
    assert t["tumour_pixels"].tolist() == [1, 3, 2, 12]
    assert list(t.columns) == list(INDEX_COLUMNS)  # no data.csv, no extra columns


def test_parent_of_kaggle_3m_is_accepted(tmp_path: Path) -> None:
    _kaggle(tmp_path / "kaggle_3m")
    assert len(index_dataset(tmp_path).table) == 6


def _no_mask(root: Path) -> None:
    write_image(root / "P" / "P_1.tif", np.zeros((4, 4, 3), np.uint8))


def _no_image(root: Path) -> None:
    _slice(root / "P", "P_1")
    write_mask(root / "P" / "P_2_mask.tif", np.zeros((8, 8), np.uint8))


def _truncated(root: Path) -> None:
    _slice(root / "P", "P_1", size=64)
    path = root / "P" / "P_1.tif"
    path.write_bytes(path.read_bytes()[:5000])


def _grey_image(root: Path) -> None:
    _slice(root / "P", "P_1")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "P" / "P_1.tif")


def _size_mismatch(root: Path) -> None:
    _slice(root / "P", "P_1")
    write_mask(root / "P" / "P_1_mask.tif", np.zeros((8, 9), np.uint8), overwrite=True)


def _non_binary(root: Path) -> None:
    _slice(root / "P", "P_1")
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).resize((8, 8), Image.NEAREST).save(
        root / "P" / "P_1_mask.tif"
    )


def _empty_patient(root: Path) -> None:
    _slice(root / "P", "P_1")
    (root / "TCGA_CS_0000_20000101").mkdir()


@pytest.mark.parametrize(
    ("make", "bad_file", "expected"),
    [
        (_no_mask, "P/P_1.tif", r"P/P_1\.tif: image without its mask: expected .*P/P_1_mask\.tif"),
        (_no_image, "P/P_2_mask.tif", r"P/P_2_mask\.tif: mask without its image: expected .*P/P_2\.tif"),
        (_truncated, "P/P_1.tif", r"P/P_1\.tif: unreadable or truncated"),
        (_grey_image, "P/P_1.tif", r"P/P_1\.tif: got shape 8 x 8 .*expected H x W x 3 uint8"),
        (_size_mismatch, "P/P_1.tif", r"P/P_1\.tif: image is 8 x 8 but its mask .*P_1_mask\.tif is 8 x 9"),
        (_non_binary, "P/P_1.tif", r"P/P_1_mask\.tif: mask values \{0, 128, 255\} are not binary"),
        (
            _empty_patient,
            "TCGA_CS_0000_20000101",
            r"no slices found in .*TCGA_CS_0000_20000101: expected files",
        ),
    ],
)
def test_bad_files_raise_or_are_skipped(tmp_path: Path, make, bad_file: str, expected: str) -> None:
    make(tmp_path)
    _slice(tmp_path / "Q", "Q_1", tumour=2)  # one good patient
    with pytest.raises(ValueError, match=expected):
        index_dataset(tmp_path)
    res = index_dataset(tmp_path, skip_bad=True)
    assert [p for p, _ in res.skipped] == [str(tmp_path / bad_file)]
    assert "Q" in res.table["patient_id"].tolist()
    assert bad_file.split("/")[-1].split("_mask")[0] not in {Path(p).name for p in res.table["image_path"]}


def test_no_valid_slices_left_raises_even_when_skipping(tmp_path: Path) -> None:
    _no_mask(tmp_path)
    with pytest.raises(ValueError, match="no valid slices"):
        index_dataset(tmp_path, skip_bad=True)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: None, r"no slices found in .*: expected files like <patient>_<n>\.tif"),
        (lambda root: (root / "notes.txt").write_text("x"), "no slices found in"),
    ],
)
def test_folder_without_slices(tmp_path: Path, make, expected: str) -> None:
    make(tmp_path)
    with pytest.raises(ValueError, match=expected):
        index_dataset(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope does not exist"):
        index_dataset(tmp_path / "nope")


def test_duplicate_slice_number_is_an_error(tmp_path: Path) -> None:
    _slice(tmp_path / "P", "P_1")
    _slice(tmp_path / "P", "P_01", ext=".png")
    with pytest.raises(ValueError, match="slice 1 of patient P appears more than once"):
        index_dataset(tmp_path)


def test_data_csv_without_patient_column(tmp_path: Path) -> None:
    _slice(tmp_path / "P", "P_1")
    (tmp_path / "data.csv").write_text("id,x\nP,1\n")
    with pytest.raises(ValueError, match=r"data\.csv: has no 'Patient' column"):
        index_dataset(tmp_path)


def test_save_load_round_trip(tmp_path: Path) -> None:
    t = index_dataset(_kaggle(tmp_path / "kaggle_3m")).table
    path = save_index(t, tmp_path / "out" / "index.csv")
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.csv"]
    back = load_index(path)
    pd.testing.assert_frame_equal(back, t, check_dtype=False)
    for col in ("slice", "height", "width", "tumour_pixels"):
        assert back[col].dtype == np.int64
    for col in ("has_tumour", "has_pre", "has_post"):
        assert back[col].dtype == bool


def test_load_keeps_numeric_looking_ids_as_strings(tmp_path: Path) -> None:
    _slice(tmp_path / "007", "007_1")
    back = load_index(save_index(index_dataset(tmp_path).table, tmp_path / "i.csv"))
    assert back["patient_id"].tolist() == ["007"]


def test_load_rejects_table_missing_columns(tmp_path: Path) -> None:
    pd.DataFrame({"patient_id": ["a"], "slice": [1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match=r"x\.csv: not an index table, missing column\(s\) patient, site"):
        load_index(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="not found"):
        load_index(tmp_path / "absent.csv")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow installed")
def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path) -> None:
    t = index_dataset(_kaggle(tmp_path / "k")).table
    with pytest.raises(ValueError, match="needs pyarrow"):
        save_index(t, tmp_path / "i.parquet")


def test_summary_text(tmp_path: Path) -> None:
    text = summarise_index(index_dataset(_kaggle(tmp_path / "kaggle_3m")).table)
    assert text == (
        "patients: 3\n"
        "slices: 6\n"
        "slices with tumour: 3 (50.0%)\n"
        "sites (patients / slices):\n"
        "  CS: 2 / 5\n"
        "  DU: 1 / 1\n"
        "missing pre-contrast: 1 patient(s): TCGA_CS_5393_19990606\n"
        "missing post-contrast: 1 patient(s): TCGA_DU_7013_19860523"
    )


def test_progress_bar_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index_dataset(_kaggle(tmp_path / "k"), progress=True)
    assert "indexing" in capsys.readouterr().err


@pytest.mark.real
def test_real_patients_index(real_patients: Path) -> None:
    t = index_dataset(real_patients).table
    assert t["patient_id"].unique().tolist() == [
        "TCGA_CS_4942_19970222",
        "TCGA_CS_4943_20000902",
        "TCGA_CS_4944_20010208",
    ]
    assert (t["site"] == "CS").all() and (t["height"] == 256).all() and (t["width"] == 256).all()
    assert t.groupby("patient_id")["slice"].apply(lambda s: s.tolist() == list(range(1, len(s) + 1))).all()
    assert len(t) == 60 and int(t["has_tumour"].sum()) == 6 + 8 + 9  # counted on the full set
    assert t["sequences"].eq("pre+flair+post").all()
    assert t.loc[t["patient"] == "TCGA_CS_4942", "age_at_initial_pathologic"].eq(44).all()
