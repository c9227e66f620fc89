"""What ``predict`` writes per case: volumes in mL and components, overview, overlays, probabilities, resume."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.inference.inputs import discover_inputs, read_case
from gliomaseg.inference.measures import components, measure
from gliomaseg.inference.orientation import into_model_frame
from gliomaseg.inference.outputs import CASES_COLUMNS, write_case
from gliomaseg.inference.overview import overview_image, overview_slices
from gliomaseg.inference.predict import predict_inputs


@pytest.fixture(scope="module")
def models(model_file) -> dict[str, Path]:
    return {"real": model_file(), "all": model_file(bias=10.0)}


def _two_cubes(shape=(40, 36, 12), touching: bool = False) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[2:12, 3:13, 1:11] = True  # 10 x 10 x 10 = 1000 voxels
    corner = 12 if touching else 20  # (12, 13, 11) touches (11, 12, 10) by a corner only
    mask[corner : corner + 5, corner + 1 : corner + 6, 11 if touching else 4 : 12 if touching else 9] = True
    return mask


# ------------------------------------------------------------------------------------------ measures
@pytest.mark.parametrize(
    ("touching", "n_components", "largest"),
    [(False, 2, 1000), (True, 1, 1000 + 25)],  # touching by a corner joins them: 26-connectivity
)
def test_components_26_connected(touching: bool, n_components: int, largest: int):
    mask = _two_cubes(touching=touching)
    summary = measure(mask, 0.5 * 0.8 * 2.0 / 1000)
    assert summary["components"] == n_components and summary["largest_component_voxels"] == largest
    assert summary["tumour_voxels"] == int(mask.sum())
    assert summary["tumour_ml"] == pytest.approx(mask.sum() * 0.0008)


def test_component_rows_largest_first_with_centroids():
    rows = components(_two_cubes(), 0.001)
    assert [(r["component"], r["voxels"]) for r in rows] == [(1, 1000), (2, 125)]
    assert rows[0]["ml"] == pytest.approx(1.0) and rows[1]["ml"] == pytest.approx(0.125)
    assert (rows[0]["centroid_i"], rows[0]["centroid_j"], rows[0]["centroid_k"]) == (6.5, 7.5, 5.5)
    assert (rows[1]["centroid_i"], rows[1]["centroid_j"], rows[1]["centroid_k"]) == (22.0, 23.0, 6.0)
    assert components(np.zeros((5, 5, 5), bool), 0.001) == []


def test_case_row_in_ml_from_the_nifti_voxel_size(tmp_path: Path):
    """Two cubes in a NIfTI of spacing 0.5 x 0.8 x 2 mm (0.0008 mL per voxel), oblique affine."""
    affine = np.array([[0.0, 0.8, 0.0, 5.0], [-0.5, 0.0, 0.0, 3.0], [0.0, 0.0, 2.0, -7.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 36, 12), np.float32), affine), tmp_path / "s.nii.gz")
    (case,) = discover_inputs([tmp_path / "s.nii.gz"], tmp_path / "out")
    read_case(case)
    mask = into_model_frame(_two_cubes(), case.frame)  # as the model saw the scan (turned to its orientation)
    row, parts = write_case(case, mask)
    assert set(row) == set(CASES_COLUMNS)
    assert row["volume_unit"] == "mL" and row["voxel_ml"] == pytest.approx(0.0008)
    assert row["tumour_ml"] == pytest.approx(1125 * 0.0008)
    assert (row["components"], row["largest_component_ml"]) == (2, pytest.approx(0.8))
    assert (row["slices"], row["slices_with_tumour"]) == (12, 10)
    assert [p["ml"] for p in parts] == [pytest.approx(0.8), pytest.approx(0.1)]
    written = np.asarray(nib.load(row["mask"]).dataobj)
    np.testing.assert_array_equal(written, _two_cubes())
    assert Path(row["overview"]).is_file() and row["probabilities"] == "" and row["overlays"] == ""


def test_case_row_in_voxels_without_a_voxel_size(tmp_path: Path):
    for n in (1, 2, 3):
        Image.fromarray(np.full((32, 32, 3), 40 * n, np.uint8)).save(tmp_path / f"v_{n}.png")
    (case,) = discover_inputs([tmp_path], tmp_path / "out")
    read_case(case)
    mask = np.zeros((3, 32, 32), bool)
    mask[0, :4, :4] = mask[2, 10:12, 10:13] = True
    row, parts = write_case(case, mask)
    assert row["volume_unit"] == "voxels" and np.isnan(row["tumour_ml"]) and np.isnan(row["largest_component_ml"])
    assert (row["tumour_voxels"], row["components"], row["largest_component_voxels"]) == (22, 2, 16)
    assert all(np.isnan(p["ml"]) for p in parts)


# ------------------------------------------------------------------------------------------ overview, overlays
def test_overview_slices_spread_over_the_tumour_and_keep_the_largest():
    mask = np.zeros((60, 8, 8), bool)
    for z in range(10, 50):
        mask[z, : 1 + (z == 33) * 6, :2] = True  # slice 33 is the largest
    picks = overview_slices(mask, 8)
    assert len(picks) == 8 and 33 in picks and min(picks) >= 10 and max(picks) < 50
    assert overview_slices(np.zeros((5, 8, 8), bool), 8) == [0, 1, 2, 3, 4]
    few = np.zeros((30, 8, 8), bool)
    few[[3, 17], 2, 2] = True
    assert {3, 17} <= set(overview_slices(few, 6)) and len(overview_slices(few, 6)) == 6


def test_overview_image_outlines_in_red_and_shrinks_large_slices():
    volume = np.full((20, 512, 512, 3), 90, np.uint8)
    mask = np.zeros((20, 512, 512), bool)
    mask[5, 100:300, 100:300] = True
    image = overview_image(volume, mask)
    assert image.shape == (2 * 256, 4 * 256, 3)  # 8 tiles of 512 shrunk to 256, 4 per row
    assert np.all(image == [255, 0, 0], axis=-1).any()


def test_predict_writes_one_overview_per_volume_and_overlays_only_on_request(tmp_path: Path, models):
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((48, 40, 9), np.float32), np.eye(4)), tmp_path / "v.nii")
    out = tmp_path / "out"
    table = predict_inputs(models["real"], [tmp_path / "v.nii"], out)
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "components.csv", "v_mask.nii", "v_overview.png"]
    assert table.loc[0, "overlays"] == ""
    table = predict_inputs(models["real"], [tmp_path / "v.nii"], out, overlays=True, overview=False, overwrite=True)
    assert len(list((out / "v_overlay").glob("v_*.png"))) == 9 and table.loc[0, "overview"] == ""


# ------------------------------------------------------------------------------------------ probabilities
@pytest.mark.parametrize("name", ["v.nii.gz", "slices"])
def test_save_probabilities_in_the_inputs_geometry(tmp_path: Path, models, name: str):
    affine = np.array([[0.0, 0.0, 2.5, 1.0], [0.9, 0.0, 0.0, 2.0], [0.0, -0.9, 0.0, 3.0], [0, 0, 0, 1]])
    if name == "slices":
        (tmp_path / name).mkdir()
        for n in (1, 2):
            Image.fromarray(np.random.default_rng(n).integers(0, 255, (40, 44, 3), np.uint8)).save(
                tmp_path / name / f"s_{n}.png"
            )
        shape, expected_affine, proba = (40, 44, 2), np.eye(4), tmp_path / "out" / "slices" / "s_proba.nii.gz"
    else:
        # stored sagittal (the third axis left-right, 2.5 mm): the model sees it resliced to axial slices
        data = np.random.default_rng(0).normal(50, 10, (44, 40, 16)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), tmp_path / name)
        shape, expected_affine, proba = (44, 40, 16), affine, tmp_path / "out" / "v_proba.nii.gz"
    table = predict_inputs(models["real"], [tmp_path / name], tmp_path / "out", save_probabilities=True)
    assert table.loc[0, "probabilities"] == str(proba)
    image = nib.load(proba)
    probs = np.asarray(image.dataobj)
    assert probs.shape == shape and probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0 and probs.std() > 0
    np.testing.assert_allclose(image.affine, expected_affine, atol=1e-6)


# ------------------------------------------------------------------------------------------ resume
def test_resume_redoes_a_case_that_lost_its_overview(tmp_path: Path, models):
    for name in ("a", "b"):
        data = np.random.default_rng(len(name)).random((36, 36, 4), np.float32)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / f"{name}.nii.gz")
    inputs, out = [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], tmp_path / "out"
    first = predict_inputs(models["all"], inputs, out, save_probabilities=True)
    (out / "b_overview.png").unlink()
    (out / "cases.csv").unlink()
    stamp = (out / "a_mask.nii.gz").stat().st_mtime_ns
    table = predict_inputs(models["all"], inputs, out, save_probabilities=True, resume=True)
    assert (out / "b_overview.png").is_file() and (out / "a_mask.nii.gz").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(table[list(CASES_COLUMNS)], first[list(CASES_COLUMNS)])
    # a's row is read back from its mask (no quality: its probabilities are gone); b is predicted again
    assert table["quality_flag"].tolist() == ["", first.loc[1, "quality_flag"]] and first.loc[1, "quality_flag"]
    assert table.loc[1, "quality_score"] == pytest.approx(first.loc[1, "quality_score"])
    assert table.loc[0, "tumour_ml"] == pytest.approx(36 * 36 * 4 * 0.002)
