"""Tests of the writers: NIfTI masks and probabilities in the input's exact geometry, DICOM SEG round trips."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from tests.inference.dicom_corpus import PATIENT_ID, dicom_volume, read_back, series_affine, write_series

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.inference.volume import Volume
from gliomaseg.inference.writers import (
    DICOM_DATASETS,
    NIFTI_IMAGE,
    SEGMENT_LABEL,
    source_frames,
    write_dicom_seg,
    write_nifti_mask,
    write_probabilities,
)

#: What the SEG records of the model (predict passes ``model_algorithm`` of the real one).
ALGORITHM = ("gliomaseg unet", "sha256:0123456789ab, gliomaseg 0.1.0, 565b4c0391dd:fold0")


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(linear: np.ndarray, origin=(12.0, -30.5, 7.25)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    return affine


# Orientations: RAS, LPS (BraTS-like), a sagittal permutation with flips, and an oblique anisotropic one.
AFFINES = {
    "ras": _affine(np.diag([1.0, 1.0, 1.0])),
    "lps": _affine(np.diag([-1.0, -1.0, 1.0])),
    "sagittal-flipped": _affine(np.array([[0.0, 0.0, -1.2], [-0.9, 0.0, 0.0], [0.0, 0.9, 0.0]])),
    "oblique": _affine(_rotation(0, 17.0) @ _rotation(2, -8.0) @ np.diag([0.8, 0.95, 3.0])),
}


def _nifti_volume(path: Path, affine: np.ndarray, shape=(36, 40, 7)) -> Volume:
    data = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=4)
    nib.save(image, path)
    image = nib.load(path)
    return Volume(np.asarray(image.dataobj)[..., None], image.affine, path, "nifti", extra={NIFTI_IMAGE: image})


def _random_mask(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.3


# ------------------------------------------------------------------------------------------ NIfTI
@pytest.mark.parametrize("orientation", sorted(AFFINES))
@pytest.mark.parametrize("with_header", [True, False], ids=["nifti-source", "no-header"])
def test_nifti_mask_has_the_inputs_exact_shape_and_affine(tmp_path: Path, orientation: str, with_header: bool):
    affine = AFFINES[orientation]
    volume = _nifti_volume(tmp_path / "scan.nii.gz", affine)
    if not with_header:
        volume = Volume(volume.array, volume.affine, volume.source, "dicom")
    mask = _random_mask(volume.shape)
    written = nib.load(write_nifti_mask(tmp_path / "scan_mask.nii.gz", mask, volume))
    data = np.asarray(written.dataobj)
    assert data.shape == volume.shape and data.dtype == np.uint8
    np.testing.assert_array_equal(data, mask.astype(np.uint8))
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    codes = (int(written.header["qform_code"]), int(written.header["sform_code"]))
    assert codes == ((1, 4) if with_header else (1, 1))
    assert written.header.get_xyzt_units()[0] == "mm"


def test_nifti_2d_source_comes_back_2d(tmp_path: Path):
    image = nib.Nifti1Image(np.ones((40, 32), np.float32), np.diag([0.7, 0.7, 1.0, 1.0]))
    nib.save(image, tmp_path / "slice.nii")
    image = nib.load(tmp_path / "slice.nii")
    volume = Volume(np.ones((40, 32, 1, 1)), image.affine, tmp_path / "slice.nii", "nifti", extra={NIFTI_IMAGE: image})
    written = nib.load(write_nifti_mask(tmp_path / "m.nii", np.ones((40, 32, 1), bool), volume))
    assert written.shape == (40, 32)


def test_writers_refuse_overwrite_and_wrong_shapes(tmp_path: Path):
    volume = _nifti_volume(tmp_path / "scan.nii.gz", AFFINES["ras"])
    target = tmp_path / "m.nii.gz"
    write_nifti_mask(target, np.zeros(volume.shape, bool), volume)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_nifti_mask(target, np.zeros(volume.shape, bool), volume)
    write_nifti_mask(target, np.ones(volume.shape, bool), volume, overwrite=True)
    assert np.asarray(nib.load(target).dataobj).min() == 1
    with pytest.raises(GliomasegError, match="does not match the input"):
        write_nifti_mask(tmp_path / "x.nii.gz", np.zeros((7, 40, 36), bool), volume)
    with pytest.raises(GliomasegError, match=r"outside \[0, 1\]"):
        write_probabilities(tmp_path / "p.nii.gz", np.full(volume.shape, 1.5, np.float32), volume)


@pytest.mark.parametrize("orientation", ["lps", "oblique"])
def test_probabilities_in_the_inputs_geometry(tmp_path: Path, orientation: str):
    volume = _nifti_volume(tmp_path / "scan.nii.gz", AFFINES[orientation])
    probs = np.random.default_rng(2).random(volume.shape).astype(np.float32)
    written = nib.load(write_probabilities(tmp_path / "scan_proba.nii.gz", probs, volume))
    data = np.asarray(written.dataobj)
    assert data.dtype == np.float32 and data.shape == volume.shape
    np.testing.assert_array_equal(data, probs)
    np.testing.assert_allclose(written.affine, AFFINES[orientation], atol=1e-5)


# ------------------------------------------------------------------------------------------ DICOM SEG
SERIES = {
    "axial": {},
    "reversed-slices": {"row_dir": (1, 0, 0), "col_dir": (0, -1, 0)},  # normal points down: slices run feet-ward
    "oblique": {"row_dir": (1.0, 0.25, 0.0), "col_dir": (-0.2, 0.9, 0.35)},
    "sagittal": {"row_dir": (0, 1, 0), "col_dir": (0, 0, -1), "spacing": (0.9, 0.9, 1.5)},
}


def _series(tmp_path: Path, name: str, n_slices: int = 5) -> list:
    params = dict(SERIES[name])
    if "col_dir" in params:  # make the column direction orthogonal to the row direction
        row = np.asarray(params["row_dir"], float)
        col = np.asarray(params["col_dir"], float)
        params["col_dir"] = tuple(col - row * (row @ col) / (row @ row))
    pixels = np.random.default_rng(3).integers(0, 4000, (n_slices, 24, 30)).astype(np.uint16)  # Z x rows x columns
    return read_back(write_series(tmp_path / "series", pixels.transpose(2, 1, 0), series_affine(**params)))


def _check_seg(path: Path, datasets: list, expected: np.ndarray) -> hd.seg.Segmentation:
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in datasets]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
    np.testing.assert_array_equal(pixels, expected)
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == set(uids)
    assert seg.SegmentSequence[0].SegmentLabel == SEGMENT_LABEL
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    return seg


@pytest.mark.parametrize("name", sorted(SERIES))
def test_dicom_seg_round_trip_equals_the_mask(tmp_path: Path, name: str):
    datasets = _series(tmp_path, name)
    volume = dicom_volume(datasets)
    mask = _random_mask(volume.shape, seed=4)
    path = write_dicom_seg(tmp_path / "case_seg.dcm", mask, volume, algorithm=ALGORITHM)
    # The builder's volume puts columns on the first axis: frame k is mask[:, :, k] transposed.
    expected = np.stack([mask[:, :, k].T for k in range(volume.shape[2])]).astype(np.uint8)
    seg = _check_seg(path, datasets, expected)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ALGORITHM
    assert PATIENT_ID not in path.name


@pytest.mark.parametrize("layout", ["rows-first", "slices-reversed-and-flipped"])
def test_dicom_seg_places_frames_by_geometry_whatever_the_volumes_axis_order(tmp_path: Path, layout: str):
    """The writer finds each source frame's voxels from the affine, not from an assumed axis order."""
    datasets = _series(tmp_path, "oblique")
    base = dicom_volume(datasets)
    if layout == "rows-first":  # array[r, c, k]: swap the first two axes and their affine columns
        array, perm = np.swapaxes(base.array, 0, 1), [1, 0, 2]
        affine = base.affine.copy()
        affine[:3, :3] = base.affine[:3, perm]
    else:  # slices stored last-first and columns flipped: the affine says so
        array = base.array[::-1, :, ::-1]
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1, base.shape[0] - 1
        flip[2, 2], flip[2, 3] = -1, base.shape[2] - 1
        affine = base.affine @ flip
    volume = Volume(array, affine, base.source, "dicom", extra=base.extra)
    mask = _random_mask(volume.shape, seed=5)
    frames = source_frames(mask, volume)
    original = mask.swapaxes(0, 1) if layout == "rows-first" else mask[::-1, :, ::-1]  # back to the builder's order
    expected = np.stack([original[:, :, k].T for k in range(original.shape[2])]).astype(np.uint8)
    np.testing.assert_array_equal(frames, expected)
    _check_seg(write_dicom_seg(tmp_path / "seg.dcm", mask, volume, algorithm=ALGORITHM), datasets, expected)


def test_dicom_seg_of_an_enhanced_multiframe_source(tmp_path: Path):
    singles = _series(tmp_path, "oblique", n_slices=4)
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=singles,
        series_instance_uid=hd.UID(),
        series_number=5,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    base = dicom_volume(singles)
    volume = Volume(base.array, base.affine, Path("mf"), "dicom", extra={DICOM_DATASETS: [enhanced]})
    mask = _random_mask(volume.shape, seed=6)
    path = write_dicom_seg(tmp_path / "mf_seg.dcm", mask, volume, algorithm=ALGORITHM)
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_frame(enhanced.SOPInstanceUID, source_frame_numbers=[1, 2, 3, 4])[..., 0]
    # The converter orders its frames itself: frame f is the single slice at the same position.
    positions = [list(ds.ImagePositionPatient) for ds in singles]
    order = [
        positions.index(list(frame.PlanePositionSequence[0].ImagePositionPatient))
        for frame in enhanced.PerFrameFunctionalGroupsSequence
    ]
    np.testing.assert_array_equal(pixels, np.stack([mask[:, :, k].T for k in order]).astype(np.uint8))


def test_dicom_seg_empty_mask_and_refusals(tmp_path: Path):
    datasets = _series(tmp_path, "axial", n_slices=3)
    volume = dicom_volume(datasets)
    _check_seg(
        write_dicom_seg(tmp_path / "e.dcm", np.zeros(volume.shape, bool), volume, algorithm=ALGORITHM),
        datasets,
        np.zeros((3, 24, 30)),
    )
    with pytest.raises(OutputExistsError):
        write_dicom_seg(tmp_path / "e.dcm", np.zeros(volume.shape, bool), volume, algorithm=ALGORITHM)
    nifti = Volume(volume.array, volume.affine, Path("scan.nii.gz"), "nifti")
    with pytest.raises(GliomasegError, match="needs the source DICOM series"):
        write_dicom_seg(tmp_path / "n.dcm", np.zeros(volume.shape, bool), nifti, algorithm=ALGORITHM)
    affine = volume.affine.copy()
    affine[:3, 3] += 0.4 * affine[:3, 0]  # off the grid by 0.4 voxel
    shifted = Volume(volume.array, affine, volume.source, "dicom", extra=volume.extra)
    with pytest.raises(GliomasegError, match="voxel grid"):
        write_dicom_seg(tmp_path / "s.dcm", np.zeros(volume.shape, bool), shifted, algorithm=ALGORITHM)
