"""Phantom datasets: layout round trip through the index, determinism, and a visible lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import INDEX_COLUMNS
from gliomaseg.data.io import read_image, read_mask
from gliomaseg.data.phantoms import DATA_CSV_COLUMNS, synthesise_dataset, synthesise_volume


def test_layout_round_trips_through_index(phantoms: Path) -> None:
    t = index_dataset(phantoms).table
    assert list(t.columns) == [*INDEX_COLUMNS, *DATA_CSV_COLUMNS[1:]]
    patients = t["patient_id"].unique().tolist()
    assert [p[:13] for p in patients] == [  # sorted by folder name: sites cycle SA, SB, SC
        "TCGA_SA_P001_",
        "TCGA_SA_P004_",
        "TCGA_SB_P002_",
        "TCGA_SB_P005_",
        "TCGA_SC_P003_",
        "TCGA_SC_P006_",
    ]
    assert t.groupby("site")["patient_id"].nunique().to_dict() == {"SA": 2, "SB": 2, "SC": 2}
    counts = t.groupby("patient_id").size()
    assert counts.between(8, 10).all()
    # Natural order with contiguous numbering 1..S (10 sorts after 9).
    for _, g in t.groupby("patient_id"):
        assert g["slice"].tolist() == list(range(1, len(g) + 1))
    assert (t["height"] == 64).all() and (t["width"] == 64).all()
    # Patient 3 lacks pre-contrast, patient 5 post-contrast; the rest have all three.
    seq = t.groupby("patient")["sequences"].first().to_dict()
    assert seq["TCGA_SC_P003"] == "flair+post" and seq["TCGA_SB_P005"] == "pre+flair"
    assert {seq[p] for p in seq if p not in ("TCGA_SC_P003", "TCGA_SB_P005")} == {"pre+flair+post"}
    # Every patient has a lesion; roughly a third of the slices show it.
    assert t.groupby("patient_id")["has_tumour"].any().all()
    assert 0.15 <= t["has_tumour"].mean() <= 0.6
    # data.csv joined: the patient key and blank fields (ethnicity is mostly blank).
    assert t["age_at_initial_pathologic"].dropna().between(20, 75).all()
    assert t["ethnicity"].isna().any()


def test_files_have_kaggle_types(phantoms: Path) -> None:
    folder = sorted(p for p in phantoms.iterdir() if p.is_dir())[0]
    with Image.open(folder / f"{folder.name}_1.tif") as im:
        assert (im.format, im.mode, im.size) == ("TIFF", "RGB", (64, 64))
    masks = [np.asarray(Image.open(p)) for p in folder.glob("*_mask.tif")]
    assert all(m.dtype == np.uint8 and m.ndim == 2 for m in masks)
    assert set(np.unique(np.stack(masks)).tolist()) == {0, 255}
    header = (phantoms / "data.csv").read_text().splitlines()[0]
    assert header == ",".join(DATA_CSV_COLUMNS)


def test_deterministic_with_seed() -> None:
    a = synthesise_volume(np.random.default_rng(5), 6, 48, missing=("pre",))
    b = synthesise_volume(np.random.default_rng(5), 6, 48, missing=("pre",))
    c = synthesise_volume(np.random.default_rng(6), 6, 48, missing=("pre",))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[0][..., 0], a[0][..., 1])


def test_dataset_files_are_deterministic(tmp_path: Path, phantoms: Path) -> None:
    again = synthesise_dataset(tmp_path / "again", 6, slices=(8, 10), size=64)
    files = sorted(p.relative_to(phantoms) for p in phantoms.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files[::7]:
        assert (phantoms / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_lesion_is_bright_on_flair(phantoms: Path) -> None:
    t = index_dataset(phantoms).table
    rows = t[t["tumour_pixels"] >= 20]
    assert len(rows) >= 6
    for _, row in rows.iterrows():
        img, mask = read_image(row["image_path"]), read_mask(row["mask_path"]).astype(bool)
        # A 3-pixel ring around the lesion, inside the head (background is exactly 0).
        ring = ndimage.binary_dilation(mask, iterations=5) & ~ndimage.binary_dilation(mask, iterations=2)
        ring &= img.sum(-1) > 0
        flair = img[..., 1].astype(float)
        assert flair[mask].mean() > flair[ring].mean() + 40, row["image_path"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_what_flair_shows(seed: int) -> None:
    # A threshold halfway between tissue and lesion FLAIR recovers the mask: the task is learnable.
    img, mask = synthesise_volume(np.random.default_rng(seed), 12, 96)
    flair, lesion = img[..., 1].astype(float), mask.astype(bool)
    tissue = np.median(flair[img.sum(-1) > 0])
    pred = flair > tissue + 0.5 * (np.median(flair[lesion]) - tissue)
    dice = 2 * (pred & lesion).sum() / (pred.sum() + lesion.sum())
    assert dice > 0.9


def test_refuses_non_empty_folder_and_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    synthesise_dataset(out, 4, slices=(2, 2), size=32)
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"ph is not empty.*--overwrite"):
        synthesise_dataset(out, 2, slices=(2, 2), size=32)
    synthesise_dataset(out, 2, slices=(2, 2), size=32, overwrite=True)
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert len(index_dataset(out).table) == 4


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n_patients": 0}, "n_patients must be >= 1"),
        ({"slices": (5, 3)}, "slices must be"),
        ({"size": 16}, "size must be >= 32"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        synthesise_dataset(tmp_path / "x", **kwargs)


def test_unknown_missing_sequence() -> None:
    with pytest.raises(ValueError, match="unknown sequence"):
        synthesise_volume(np.random.default_rng(0), 4, 32, missing=("flair",))
