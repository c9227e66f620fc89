"""The model's frame and back: 48 axis orientations give the same mask in each input's own geometry;
tilted scans are resliced; the field-of-view window; the model file's orientation."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import nibabel.orientations as no
import numpy as np
import pytest
from tests.inference.dicom_corpus import phantom, rotation

from gliomaseg.data.io import KAGGLE_3M_ORIENTATION
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.orientation import from_model_frame, into_model_frame, model_orientation, to_model_frame
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.segmenter import Segmenter
from gliomaseg.inference.volume import Volume

#: Every axis orientation: the 6 permutations of the axes times the 8 combinations of flips.
ORIENTATIONS = [
    np.array([[axis, flip] for axis, flip in zip(perm, flips)], float)
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((1, -1), repeat=3)
]


@pytest.fixture(scope="module")
def seg(model_file, base) -> Segmenter:
    """A real tiny U-Net whose threshold is its median probability on ``base``: a mask of about half the voxels."""
    seg = Segmenter.from_checkpoint(model_file(randomise_bn=True, seed=3), device="cpu", graph_fusion=False)
    proba = seg.predict_proba(np.repeat(np.moveaxis(_uint8(base[0]), 2, 0)[..., None], 3, axis=-1))
    return seg.with_postprocess(threshold=float(np.median(proba)))


@pytest.fixture(scope="module")
def base() -> tuple[np.ndarray, np.ndarray]:
    """A phantom FLAIR stored in the model's frame (rows P, columns L, slices S), with a matching affine."""
    flair, _, _ = phantom(1, slices=10, size=48)
    data = np.ascontiguousarray(flair.transpose(1, 0, 2))  # X x Y x Z = rows x columns x slices
    affine = np.array([[0, -1.1, 0, 30.0], [-0.9, 0, 0, 20.0], [0, 0, 4.0, -10.0], [0, 0, 0, 1]])
    return data, affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    nib.save(image, path)
    return path


@pytest.fixture(scope="module")
def reference(seg: Segmenter, base, tmp_path_factory) -> np.ndarray:
    """The mask of the volume as stored in the model's frame, through predict (field-of-view window on)."""
    data, affine = base
    root = tmp_path_factory.mktemp("reference")
    scan = _save(root / "base.nii.gz", data, affine)
    predict_inputs(seg, [scan], root / "plain", overlays=False, field_of_view=False)
    plain = np.asarray(nib.load(root / "plain" / "base_mask.nii.gz").dataobj)
    # The model saw the stored array unchanged: slices along the last axis, as kaggle_3m's.
    direct = seg.predict_volume(np.repeat(np.moveaxis(_uint8(data), 2, 0)[..., None], 3, axis=-1))
    np.testing.assert_array_equal(plain, np.moveaxis(direct, 0, 2))
    predict_inputs(seg, [scan], root / "out", overlays=False)
    mask = np.asarray(nib.load(root / "out" / "base_mask.nii.gz").dataobj)
    assert 0.05 < mask.mean() < 0.95, "the test needs a mask that a wrong turn would change"
    assert not np.array_equal(mask, mask[::-1]) and not np.array_equal(mask, mask[:, ::-1])
    return mask


def _uint8(data: np.ndarray) -> np.ndarray:
    from gliomaseg.inference.nifti import nifti_to_uint8

    return nifti_to_uint8(data[..., None])[..., 0]


@pytest.mark.parametrize("ornt", ORIENTATIONS, ids=[f"{i:02d}" for i in range(len(ORIENTATIONS))])
def test_every_axis_orientation_gives_the_same_mask_in_its_own_geometry(
    tmp_path: Path, seg: Segmenter, base, reference: np.ndarray, ornt: np.ndarray
):
    data, affine = base
    stored = no.apply_orientation(data, ornt)
    stored_affine = affine @ no.inv_ornt_aff(ornt, data.shape)
    table = predict_inputs(
        seg, [_save(tmp_path / "scan.nii.gz", stored, stored_affine)], tmp_path / "out", overlays=False
    )
    result = nib.load(tmp_path / "out" / "scan_mask.nii.gz")
    mask = np.asarray(result.dataobj)
    assert mask.shape == stored.shape
    np.testing.assert_allclose(result.affine, stored_affine, atol=1e-5)
    # Taken back to the base layout, voxel for voxel the reference.
    back = no.apply_orientation(mask, no.ornt_transform(no.io_orientation(stored_affine), no.io_orientation(affine)))
    np.testing.assert_array_equal(back, reference)
    assert table.loc[0, "tumour_ml"] == pytest.approx(reference.sum() * 1.1 * 0.9 * 4.0 / 1000)


def test_tilted_scan_is_resliced_and_its_mask_comes_back_on_its_grid(seg: Segmenter):
    flair, truth, affine = phantom(2, slices=24, size=64, spacing=2.0)
    tilted = Volume(flair, rotation(35.0) @ affine, Path("t.nii.gz"), "nifti")
    array, frame = to_model_frame(tilted)
    assert frame.resliced and frame.spacing[0] == pytest.approx(frame.spacing[1])  # square pixels
    # The resliced grid's axes are the model's world directions.
    assert "".join(nib.aff2axcodes(frame.affine)) == "".join(KAGGLE_3M_ORIENTATION)
    back = from_model_frame(
        to_model_frame(Volume(truth.astype(np.uint8), tilted.affine, Path("m"), "nifti"))[0][..., 0] > 0, frame
    )
    assert back.shape == truth.shape
    overlap = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert overlap > 0.9  # nearest neighbour there and back: only the lesion's edge moves
    model_input = np.repeat(np.asarray(array, np.uint8), 3, axis=-1)
    mask = from_model_frame(seg.predict_volume(model_input), frame)
    assert mask.shape == truth.shape and mask.dtype == bool
    # Probabilities go back linearly (then thresholded by the caller), staying probabilities.
    proba = from_model_frame(seg.predict_proba(model_input), frame, order=1)
    assert proba.shape == truth.shape and proba.dtype == np.float32 and 0 <= proba.min() <= proba.max() <= 1


def test_small_tilt_is_permuted_not_resliced():
    flair, _, affine = phantom(0)
    array, frame = to_model_frame(Volume(flair, rotation(10.0) @ affine, Path("x"), "nifti"))
    assert not frame.resliced and array.shape == (12, 64, 64, 1)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [({}, ("P", "L", "S")), ({"orientation": ["r", "a", "s"]}, ("R", "A", "S")), (None, ("P", "L", "S"))],
)
def test_model_orientation(meta, expected):
    assert model_orientation(meta) == expected


def test_bad_model_orientation_is_refused():
    with pytest.raises(GliomasegError, match="three axis codes"):
        model_orientation({"orientation": ["L", "R", "S"]})


@pytest.mark.parametrize(
    "ornt", ORIENTATIONS[::7], ids=lambda o: "".join(f"{int(a)}{'+' if f > 0 else '-'}" for a, f in o)
)
def test_a_mask_on_the_volume_grid_enters_the_model_frame_where_the_volume_went(base, ornt):
    """into_model_frame (reference masks, e.g. the web page's ground truth) is the inverse of from_model_frame."""
    data, affine = base
    stored = no.apply_orientation(data, ornt)
    volume = Volume(stored, affine @ no.inv_ornt_aff(ornt, data.shape), Path("x"), "nifti")
    array, frame = to_model_frame(volume)
    lesion = stored > np.percentile(stored, 90)  # a mask on the stored grid, made from the voxels' values
    inside = into_model_frame(lesion, frame)
    assert inside.shape == array.shape[:3]
    np.testing.assert_array_equal(inside, array[..., 0] > np.percentile(stored, 90))  # where the voxels went
    np.testing.assert_array_equal(from_model_frame(inside, frame), lesion)
