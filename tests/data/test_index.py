"""Indexing datasets: layouts, the table's columns and values, validation errors, save/load, summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.data.index import IndexResult, index_dataset
from gliomaseg.data.index_table import INDEX_COLUMNS, index_built_from, load_index, save_index, summarise_index
from gliomaseg.data.io import write_image, write_mask
from gliomaseg.data.workspace import ensure_index
from gliomaseg.errors import GliomasegError

CSV_HEADER = "Patient,RNASeqCluster,age_at_initial_pathologic,death01\n"


def _slice(folder: Path, stem: str, *, tumour: int = 0, missing: str = "", size: int = 32, ext: str = ".tif"):
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
    assert (t["height"] == 32).all() and (t["width"] == 32).all()
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
    write_image(tmp_path / "P" / "P_1.png", np.zeros((32, 32, 3), np.uint8))
    write_mask(tmp_path / "P" / "P_1_mask.png", np.zeros((32, 32), np.uint8))
    _slice(tmp_path / "P", "P_2", ext=".png")
    # Patient Q: only blank slices; nothing shows a sequence is missing, so all count as present.
    write_image(tmp_path / "Q" / "Q_1.png", np.zeros((32, 32, 3), np.uint8))
    write_mask(tmp_path / "Q" / "Q_1_mask.png", np.zeros((32, 32), np.uint8))
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
    write_mask(root / "P" / "P_2_mask.tif", np.zeros((32, 32), np.uint8))


def _truncated(root: Path) -> None:
    _slice(root / "P", "P_1", size=64)
    path = root / "P" / "P_1.tif"
    path.write_bytes(path.read_bytes()[:5000])


def _grey_image(root: Path) -> None:
    _slice(root / "P", "P_1")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "P" / "P_1.tif")


def _size_mismatch(root: Path) -> None:
    _slice(root / "P", "P_1")
    write_mask(root / "P" / "P_1_mask.tif", np.zeros((32, 33), np.uint8), overwrite=True)


def _non_binary(root: Path) -> None:
    _slice(root / "P", "P_1")
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).resize((32, 32), Image.NEAREST).save(
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
        (_grey_image, "P/P_1.tif", r"P/P_1\.tif: got shape 32 x 32 .*expected H x W x 3 uint8"),
        (_size_mismatch, "P/P_1.tif", r"P/P_1\.tif: image is 32 x 32 but its mask .*P_1_mask\.tif is 32 x 33"),
        (_non_binary, "P/P_1_mask.tif", r"P/P_1_mask\.tif: mask values \{0, 128, 255\} are not binary"),
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


def test_every_bad_file_is_reported_in_one_error(tmp_path: Path) -> None:
    _no_mask(tmp_path)  # a naming problem: P/P_1.tif
    _slice(tmp_path / "R", "R_1", size=64)
    truncated = tmp_path / "R" / "R_1.tif"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    _slice(tmp_path / "S", "S_1")
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "S" / "S_1_mask.tif")
    _slice(tmp_path / "Q", "Q_1", tumour=2)
    with pytest.raises(GliomasegError, match=r"^3 bad file\(s\) in .*--skip-bad") as err:
        index_dataset(tmp_path)
    for name in ("P/P_1.tif: image without its mask", "R/R_1.tif: unreadable", "S/S_1_mask.tif: mask values"):
        assert name in str(err.value), name
    result = index_dataset(tmp_path, skip_bad=True)
    assert len(result.skipped) == 3 and result.table["patient_id"].tolist() == ["Q"]


def _sizes(root: Path, sizes: list[int]) -> None:
    for n, size in enumerate(sizes, 1):
        _slice(root / "P", f"P_{n}", size=size)


@pytest.mark.parametrize(
    ("sizes", "bad_slices", "expected"),
    [
        ([32, 32, 48, 32], ["P_3.tif"], r"P_3\.tif: slice is 48 x 48 but 3 other slice\(s\) of patient P are 32 x 32"),
        ([16, 16], ["P_1.tif", "P_2.tif"], r"P_1\.tif: slice is 16 x 16 pixels; slices must be at least 32 x 32"),
    ],
    ids=["one-slice-of-another-size", "too-small"],
)
def test_slice_sizes_are_checked_at_index(tmp_path: Path, sizes: list[int], bad_slices: list[str], expected: str):
    _sizes(tmp_path, sizes)
    _slice(tmp_path / "Q", "Q_1", tumour=2)
    with pytest.raises(GliomasegError, match=expected):
        index_dataset(tmp_path)
    skipped = index_dataset(tmp_path, skip_bad=True).skipped
    assert sorted(Path(p).name for p, _ in skipped) == bad_slices


def test_patients_of_different_sizes_are_allowed_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _slice(tmp_path / "P", "P_1", size=48)
    _slice(tmp_path / "Q", "Q_1", size=32)
    table = index_dataset(tmp_path).table
    assert table["height"].tolist() == [48, 32]
    assert "different sizes (48 x 48: 1 patient(s), 32 x 32: 1 patient(s))" in caplog.text


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


@pytest.mark.parametrize(
    ("data", "expected"),
    [("lgg-2", True), (".", True), ("lgg", False), ("lgg-2/P", False)],
    ids=["same", "parent", "sibling-with-the-same-prefix", "subfolder"],
)
def test_index_built_from_compares_path_components(tmp_path: Path, data: str, expected: bool) -> None:
    _slice(tmp_path / "lgg-2" / "P", "P_1")
    _slice(tmp_path / "lgg-2" / "Q", "Q_1")
    (tmp_path / "lgg" / "P").mkdir(parents=True)
    table = index_dataset(tmp_path / "lgg-2").table
    assert index_built_from(table, tmp_path / data) is expected


def test_an_index_of_a_sibling_folder_is_not_reused(tmp_path: Path) -> None:
    _slice(tmp_path / "lgg-2" / "P", "P_1")
    _slice(tmp_path / "lgg" / "Q", "Q_1")
    index_path = save_index(index_dataset(tmp_path / "lgg-2").table, tmp_path / "work" / "index.csv")
    with pytest.raises(GliomasegError, match=r"index\.csv was built from another folder than .*lgg; delete it"):
        ensure_index(tmp_path / "lgg", index_path)
