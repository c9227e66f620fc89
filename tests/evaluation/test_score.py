"""``gliomaseg score``: known answers on NIfTI, kaggle_3m slice masks and DICOM SEG, case matching, geometry checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from tests.inference.dicom_corpus import mr_datasets, series_affine

from gliomaseg.cli import main
from gliomaseg.data.io import write_image, write_mask
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.evaluation.mask_files import case_name, find_masks
from gliomaseg.evaluation.score import score_masks


def box(shape: tuple[int, int, int], lo: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, a + s) for a, s in zip(lo, size))] = 1
    return m


def nifti(path: Path, mask: np.ndarray, spacing=(1.0, 1.0, 1.0), affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(path))
    return path


def kaggle_patient(root: Path, name: str, mask: np.ndarray) -> Path:
    """A kaggle_3m patient folder: ``<name>_<n>.tif`` images, ``<name>_<n>_mask.tif`` masks (slice z: mask[..., z])."""
    folder = root / name
    for z in range(mask.shape[2]):
        write_image(folder / f"{name}_{z + 1}.tif", np.full((*mask.shape[:2], 3), 50, np.uint8))
        write_mask(folder / f"{name}_{z + 1}_mask.tif", mask[..., z].astype(bool))
    return folder


SHAPE = (12, 12, 6)
TRUTH = box(SHAPE, (2, 2, 1), (2, 2, 2))  # 8 voxels
# pred, expected (dice, iou, sensitivity, precision)
KNOWN = {
    "identical": (TRUTH, (1.0, 1.0, 1.0, 1.0)),
    "disjoint": (box(SHAPE, (8, 8, 3), (2, 2, 2)), (0.0, 0.0, 0.0, 0.0)),
    # shifted by one voxel along x: 4 of 8 voxels shared -> Dice 2*4/16, IoU 4/12
    "half_overlap": (box(SHAPE, (3, 2, 1), (2, 2, 2)), (0.5, 1 / 3, 0.5, 0.5)),
    # a 2x2x1 half of the truth: Dice 2*4/12, IoU 4/8, sensitivity 4/8, precision 4/4
    "inside": (box(SHAPE, (2, 2, 1), (2, 2, 1)), (2 / 3, 0.5, 0.5, 1.0)),
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_overlaps(tmp_path: Path, name: str) -> None:
    pred, (dice, iou, sens, prec) = KNOWN[name]
    nifti(tmp_path / "pred" / "A_mask.nii.gz", pred)
    nifti(tmp_path / "truth" / "A.nii.gz", TRUTH)
    row = score_masks(tmp_path / "pred", tmp_path / "truth", None).per_case.iloc[0]
    assert row["case"] == "tumour"
    assert (row["dice"], row["iou"], row["sensitivity"], row["precision"]) == pytest.approx((dice, iou, sens, prec))


def test_hd95_of_two_cubes_in_mm(tmp_path: Path) -> None:
    # 3x3x3 cubes 10 voxels apart along x: every edge voxel of one is 8, 9 or 10 voxels (x spacing 2 mm)
    # from the other's facing side, and the 95th percentile of those distances is 10 voxels = 20 mm.
    shape = (16, 8, 8)
    truth, pred = box(shape, (0, 2, 2), (3, 3, 3)), box(shape, (10, 2, 2), (3, 3, 3))
    nifti(tmp_path / "p" / "c.nii.gz", pred, spacing=(2.0, 0.5, 0.7))
    nifti(tmp_path / "t" / "c.nii.gz", truth, spacing=(2.0, 0.5, 0.7))
    row = score_masks(tmp_path / "p", tmp_path / "t", None).per_case.iloc[0]
    assert (row["hd95"], row["hd95_unit"]) == (pytest.approx(20.0), "mm")
    # kaggle_3m slice masks have no voxel size: the same cubes give 10 voxels
    kaggle_patient(tmp_path / "kp", "c", pred.transpose(1, 2, 0))
    kaggle_patient(tmp_path / "kt", "c", truth.transpose(1, 2, 0))
    row = score_masks(tmp_path / "kp", tmp_path / "kt", None).per_case.iloc[0]
    assert (row["hd95"], row["hd95_unit"], row["volume_unit"]) == (pytest.approx(10.0), "voxels", "voxels")


def test_volumes_in_ml_with_anisotropic_voxels(tmp_path: Path) -> None:
    shape = (20, 20, 10)
    truth = box(shape, (0, 0, 0), (10, 10, 10))  # 1000 voxels of 0.5 x 2 x 3 = 3 mm^3: 3 mL
    pred = box(shape, (0, 0, 0), (10, 10, 5))  # 500 voxels: 1.5 mL
    nifti(tmp_path / "p" / "v_pred.nii.gz", pred, spacing=(0.5, 2.0, 3.0))
    nifti(tmp_path / "t" / "v_seg.nii.gz", truth, spacing=(0.5, 2.0, 3.0))
    row = score_masks(tmp_path / "p", tmp_path / "t", None).per_case.iloc[0]
    assert row["volume_unit"] == "mL"
    assert (row["pred_volume"], row["truth_volume"], row["volume_diff"]) == pytest.approx((1.5, 3.0, -1.5))
    assert row["spacing"] == "0.5 x 2 x 3"


def test_nifti_predictions_against_a_kaggle_truth_folder(tmp_path: Path) -> None:
    truth_a, truth_b = box((16, 16, 3), (4, 4, 0), (4, 4, 3)), box((16, 16, 3), (0, 0, 0), (2, 2, 1))
    kaggle_patient(tmp_path / "kaggle_3m", "TCGA_AA_0001_20000101", truth_a)
    kaggle_patient(tmp_path / "kaggle_3m", "TCGA_AA_0002_20000101", truth_b)
    pred_a = box((16, 16, 3), (4, 4, 0), (4, 2, 3))  # half of A's tumour
    nifti(tmp_path / "pred" / "TCGA_AA_0001_20000101_mask.nii.gz", pred_a, spacing=(0.9, 0.9, 5.0))
    nifti(tmp_path / "pred" / "TCGA_AA_0002_20000101_mask.nii.gz", truth_b, spacing=(0.9, 0.9, 5.0))
    result = score_masks(tmp_path / "pred", tmp_path / "kaggle_3m", None)
    table = result.per_case.set_index("name")
    assert list(table.index) == ["TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101"]
    assert table["dice"].tolist() == pytest.approx([2 * 24 / 72, 1.0])
    voxel_ml = 0.9 * 0.9 * 5.0 / 1000
    assert table.loc["TCGA_AA_0001_20000101", "truth_volume"] == pytest.approx(48 * voxel_ml)
    assert set(table["spacing_from"]) == {"pred"}
    assert result.unmatched_pred == result.unmatched_truth == []


def test_unmatched_cases_are_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("A", "B"):
        nifti(tmp_path / "pred" / f"{name}_mask.nii.gz", TRUTH)
    for name in ("B", "C"):
        nifti(tmp_path / "truth" / f"{name}_seg.nii.gz", TRUTH)
    result = score_masks(tmp_path / "pred", tmp_path / "truth", tmp_path / "out")
    assert result.per_case["name"].tolist() == ["B"]
    assert (result.unmatched_pred, result.unmatched_truth) == (["A"], ["C"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["unmatched_pred"], summary["unmatched_truth"]) == (["A"], ["C"])
    assert "without a reference" in caplog.text and "A" in caplog.text
    with pytest.raises(GliomasegError, match="no case of .* matches"):
        score_masks(tmp_path / "pred" / "A_mask.nii.gz", tmp_path / "truth", None)


@pytest.mark.parametrize(
    ("stem", "name"),
    [("P1_mask", "P1"), ("P1_seg", "P1"), ("P1", "P1"), ("BraTS-0001-seg", "BraTS-0001"), ("case_0000", "case_0000")],
)
def test_case_names(stem: str, name: str) -> None:
    assert case_name(stem) == name


def test_two_masks_with_one_name_are_refused(tmp_path: Path) -> None:
    nifti(tmp_path / "p" / "A_mask.nii.gz", TRUTH)
    nifti(tmp_path / "p" / "A_proba.nii.gz", TRUTH.astype(np.float32) * 0.7)  # predict's probabilities: skipped
    assert list(find_masks(tmp_path / "p")) == ["A"]
    nifti(tmp_path / "p" / "sub" / "A.nii.gz", TRUTH)
    with pytest.raises(GliomasegError, match="both name case 'A'"):
        find_masks(tmp_path / "p")


@pytest.mark.parametrize(
    ("pred_spacing", "pred_shape", "message"),
    [
        ((1.0, 1.0, 2.0), SHAPE, "not on the same voxel grid"),  # another voxel size
        ((1.0, 1.0, 1.0), (12, 12, 7), "reaches outside"),  # a larger field of view
    ],
)
def test_pairs_on_different_grids_are_refused(tmp_path: Path, pred_spacing, pred_shape, message) -> None:
    nifti(tmp_path / "p" / "A.nii.gz", np.zeros(pred_shape, np.uint8), spacing=pred_spacing)
    nifti(tmp_path / "t" / "A.nii.gz", TRUTH)
    with pytest.raises(GliomasegError, match=message) as err:
        score_masks(tmp_path / "p", tmp_path / "t", None)
    assert "p/A.nii.gz" in str(err.value) and "t/A.nii.gz" in str(err.value)


def test_shape_mismatch_without_affine_is_refused(tmp_path: Path) -> None:
    kaggle_patient(tmp_path / "kaggle_3m", "P", TRUTH)
    nifti(tmp_path / "p" / "P_mask.nii.gz", np.zeros((12, 12, 5), np.uint8))
    with pytest.raises(GliomasegError, match=r"case 'P': .* has shape \(12, 12, 5\)"):
        score_masks(tmp_path / "p", tmp_path / "kaggle_3m", None)


def test_a_prediction_stored_in_another_axis_order_is_put_on_the_reference_grid(tmp_path: Path) -> None:
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = (-10, 20, 5)
    nifti(tmp_path / "t" / "A.nii.gz", TRUTH, affine=affine)
    # The same voxels stored with axes (z, y, x) and y reversed; the affine says so.
    stored = np.flip(TRUTH, 1).transpose(2, 1, 0)
    index_to_truth = np.zeros((4, 4))
    index_to_truth[0, 2] = index_to_truth[2, 0] = 1
    index_to_truth[1, 1], index_to_truth[1, 3], index_to_truth[3, 3] = -1, SHAPE[1] - 1, 1
    nifti(tmp_path / "p" / "A_mask.nii.gz", stored, affine=affine @ index_to_truth)
    row = score_masks(tmp_path / "p", tmp_path / "t", None).per_case.iloc[0]
    assert (row["dice"], row["spacing_from"], row["spacing"]) == (1.0, "both", "0.8 x 0.8 x 3")


def test_cases_without_a_voxel_size_are_left_out_of_the_mm_summaries(tmp_path: Path) -> None:
    nifti(tmp_path / "p" / "A.nii.gz", TRUTH, spacing=(1.0, 1.0, 2.0))
    nifti(tmp_path / "t" / "A.nii.gz", TRUTH, spacing=(1.0, 1.0, 2.0))
    kaggle_patient(tmp_path / "p", "K", TRUTH)
    kaggle_patient(tmp_path / "t", "K", TRUTH)
    result = score_masks(tmp_path / "p", tmp_path / "t", None)
    assert result.per_case["volume_unit"].tolist() == ["mL", "voxels"]
    summary = result.summary
    assert summary["units"] == {"hd95": "mm", "volume": "mL"}
    assert summary["summary"]["metrics"]["truth_volume"]["mean"] == pytest.approx(8 * 2 / 1000)
    assert summary["summary"]["metrics"]["truth_volume"]["n_missing"] == 1
    assert summary["summary"]["metrics"]["dice"]["n"] == 2  # unit-free metrics keep both cases
    assert "without a voxel size (K)" in summary["warnings"][0]


@pytest.mark.parametrize(("pred_voxels", "label"), [(0, "true_negative"), (3, "false_positive")])
def test_empty_truth_is_labelled_and_counted(tmp_path: Path, pred_voxels: int, label: str) -> None:
    pred = np.zeros(SHAPE, np.uint8)
    pred[0, 0, :pred_voxels] = 1
    nifti(tmp_path / "p" / "E.nii.gz", pred)
    nifti(tmp_path / "p" / "T.nii.gz", TRUTH)
    nifti(tmp_path / "t" / "E.nii.gz", np.zeros(SHAPE, np.uint8))
    nifti(tmp_path / "t" / "T.nii.gz", TRUTH)
    result = score_masks(tmp_path / "p", tmp_path / "t", tmp_path / "out")
    row = result.per_case.set_index("name").loc["E"]
    assert row["case"] == label and math.isnan(row["dice"]) and math.isnan(row["hd95"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())  # strict JSON: NaN is null
    assert summary["summary"]["cases"] == {
        "tumour": 1,
        "true_negative": int(label == "true_negative"),
        "false_positive": int(label == "false_positive"),
    }
    assert summary["mean"]["dice"] == 1.0  # over tumour cases only, not a silent NaN or 1.0 for E
    assert summary["metric_per_case"][0]["dice"] is None
    assert pd.read_csv(tmp_path / "out" / "per_case.csv")["case"].tolist() == [label, "tumour"]


def test_label_maps_count_as_whole_tumour_and_images_are_refused(tmp_path: Path) -> None:
    labels = TRUTH * 2
    labels[2, 2, 1] = 4  # BraTS-style labels
    nifti(tmp_path / "p" / "A.nii.gz", TRUTH)
    nifti(tmp_path / "t" / "A.nii.gz", labels)
    assert score_masks(tmp_path / "p", tmp_path / "t", None).per_case.iloc[0]["dice"] == 1.0
    image = np.random.default_rng(0).integers(0, 1000, SHAPE).astype(np.int16)
    nifti(tmp_path / "t" / "A.nii.gz", image)
    with pytest.raises(GliomasegError, match="looks like an image"):
        score_masks(tmp_path / "p", tmp_path / "t", None)


# ----------------------------------------------------------------------------------------- DICOM SEG
@pytest.mark.parametrize(("file_name", "kind"), [("case1_seg.dcm", "BINARY"), ("case1", "FRACTIONAL")])
def test_dicom_seg_against_a_nifti_truth(tmp_path: Path, file_name: str, kind: str) -> None:
    import highdicom as hd

    spacing = (2.5, 0.7, 0.9)  # slice, row, column
    mask = np.zeros((6, 16, 20), bool)  # S x rows x cols
    mask[2:4, 5:9, 6:12] = True
    # An axial series along +z of LPS; the reference below is NIfTI on its grid: array [col, row, slice].
    ras = series_affine(spacing=(spacing[1], spacing[2], spacing[0]), origin=(10.0, -5.0, 0.0))
    truth = mask.transpose(2, 1, 0)
    series = mr_datasets(np.zeros(truth.shape), ras)
    seg = hd.seg.Segmentation(
        source_images=series,
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues[kind],
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="tumour",
                segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure"),
                segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=hd.AlgorithmIdentificationSequence(
                    "gliomaseg", hd.sr.CodedConcept("123109", "DCM", "Manual Processing"), "1"
                ),
            )
        ],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    (tmp_path / "p").mkdir()
    seg.save_as(tmp_path / "p" / file_name)
    assert [m.kind for m in find_masks(tmp_path / "p").values()] == ["dicom-seg"]
    for k, image in enumerate(series):  # the source series beside it is not a mask: skipped
        image.save_as(tmp_path / "p" / f"mr_{k}.dcm", enforce_file_format=True)
    nifti(tmp_path / "t" / "case1.nii.gz", truth, affine=ras)
    row = score_masks(tmp_path / "p", tmp_path / "t", None).per_case.iloc[0]
    assert (row["dice"], row["volume_unit"]) == (1.0, "mL")
    assert row["truth_volume"] == pytest.approx(mask.sum() * 2.5 * 0.7 * 0.9 / 1000)
    # predict writes a DICOM input's mask as <name>_mask.nii.gz and <name>_seg.dcm: one case, the NIfTI read
    nifti(tmp_path / "p" / "case1_mask.nii.gz", truth, affine=ras)
    assert [m.kind for m in find_masks(tmp_path / "p").values()] == ["nifti"]


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_writes_summary_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nifti(tmp_path / "p" / "A_mask.nii.gz", KNOWN["half_overlap"][0], spacing=(1.0, 1.0, 2.0))
    nifti(tmp_path / "t" / "A.nii.gz", TRUTH, spacing=(1.0, 1.0, 2.0))
    out = tmp_path / "score"
    assert main(["score", str(tmp_path / "p"), str(tmp_path / "t"), "--out", str(out), "--n-boot", "50"]) == 0
    text = capsys.readouterr().out
    assert "A: Dice 0.500" in text and "HD95 (mm)" in text
    assert sorted(p.name for p in out.iterdir()) == ["per_case.csv", "summary.json"]
    assert main(["score", str(tmp_path / "p"), str(tmp_path / "t"), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(OutputExistsError):
        score_masks(tmp_path / "p", tmp_path / "t", out)
    assert main(["score", str(tmp_path / "p"), str(tmp_path / "t"), "--out", str(out), "--overwrite"]) == 0
