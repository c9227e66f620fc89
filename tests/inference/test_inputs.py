"""Tests of reading the user's inputs: finding cases, grey slices, NIfTI scaling, ``read_volume``, errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from gliomaseg.data.io import read_image
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.inputs import discover_inputs, nifti_to_uint8, read_case, read_volume


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grey_image_is_flair_in_all_channels(tmp_path: Path):
    grey = _rgb(20, 24)[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    (case,) = discover_inputs([tmp_path / "g.png"], tmp_path / "out")
    volume = read_case(case)
    assert volume.shape == (1, 20, 24, 3)
    for c in range(3):
        np.testing.assert_array_equal(volume[0, ..., c], grey)


def test_nifti_to_uint8_percentile_scaling():
    data = np.arange(1001, dtype=np.float32).reshape(-1, 1)  # percentiles 0.5 / 99.5 are 5 and 995
    scaled = nifti_to_uint8(data)[:, 0]
    assert scaled[:6].tolist() == [0] * 6
    assert scaled[995:].tolist() == [255] * 6
    assert scaled[500] == round((500 - 5) * 255 / 990)
    assert nifti_to_uint8(np.full((4, 1), 3.0))[..., 0].tolist() == [0] * 4  # constant channel
    raw = np.arange(12, dtype=np.uint8).reshape(4, 3)
    assert nifti_to_uint8(raw) is raw  # uint8 kept as is


def test_colliding_output_names(tmp_path: Path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.fromarray(_rgb(32, 32)).save(tmp_path / sub / "s.png")
    with pytest.raises(ValueError, match="would both write"):
        discover_inputs([tmp_path / "x" / "s.png", tmp_path / "y" / "s.png"], tmp_path / "out")


def test_missing_input_and_empty_folder(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        discover_inputs([tmp_path / "nope.png"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no slice images"):
        discover_inputs([tmp_path / "empty"], tmp_path / "out")


def _patient_folder(tmp_path: Path, phantoms: Path) -> tuple[Path, np.ndarray]:
    folder = sorted(p for p in phantoms.iterdir() if p.is_dir())[0]
    n = len(list(folder.glob("*_mask.tif")))
    return folder, np.stack([read_image(folder / f"{folder.name}_{i}.tif") for i in range(1, n + 1)])


def _slice_folder(tmp_path: Path, phantoms: Path) -> tuple[Path, np.ndarray]:
    slices = [_rgb(24, 20, seed=n) for n in (1, 2, 10)]
    for n, image in zip((1, 2, 10), slices):
        Image.fromarray(image).save(tmp_path / f"scan_{n}.png")
    return tmp_path, np.stack(slices)


def _nifti(tmp_path: Path, phantoms: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(2).integers(0, 256, (20, 24, 3, 3), dtype=np.uint8)  # H x W x S x 3
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    return tmp_path / "v.nii.gz", data.transpose(2, 0, 1, 3)


@pytest.mark.parametrize("make", [_patient_folder, _slice_folder, _nifti])
def test_read_volume_of_each_kind(tmp_path: Path, phantoms: Path, make):
    path, expected = make(tmp_path, phantoms)
    volume = read_volume(path)
    assert volume.dtype == np.uint8
    np.testing.assert_array_equal(volume, expected)  # slices in natural order: 2 before 10


def test_read_volume_refuses_a_folder_of_several_volumes(phantoms: Path):
    with pytest.raises(GliomasegError, match=r"kaggle_3m holds 6 volumes"):
        read_volume(phantoms)
