"""Tests of reading the user's inputs: finding cases, grey slices, NIfTI scaling, ``read_volume``, errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from gliomaseg.data.io import read_image
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.inputs import discover_inputs, read_case, read_volume
from gliomaseg.inference.nifti import nifti_to_uint8


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


#: An affine whose axes point as kaggle_3m's rows, columns and slices do (posterior, left, superior).
MODEL_FRAME = np.array([[0.0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _nifti(tmp_path: Path, phantoms: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(2).integers(0, 256, (40, 36, 3, 3), dtype=np.uint8)  # H x W x S x 3
    nib.save(nib.Nifti1Image(data, MODEL_FRAME), tmp_path / "v.nii.gz")
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


# ------------------------------------------------------------------------------------ bad NIfTI
def _nifti_file(path: Path, data: np.ndarray, affine: np.ndarray | None = MODEL_FRAME) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)  # affine None: a header without orientation
    return path


def _with_values(*values: float) -> np.ndarray:
    data = np.random.default_rng(0).normal(100, 20, (40, 40, 4)).astype(np.float32)
    data.flat[: len(values)] = values
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_with_values(np.nan, np.nan), r"v\.nii\.gz: 2 NaN and 0 infinite voxel\(s\).*replace them"),
        (_with_values(np.inf, -np.inf, np.nan), r"v\.nii\.gz: 1 NaN and 2 infinite voxel\(s\)"),
        (
            np.zeros((40, 12, 40), np.float32),
            r"v\.nii\.gz: slices of 40 x 12 voxels in the model's orientation are too",
        ),
    ],
    ids=["nan", "inf", "tiny-in-plane"],
)
def test_bad_nifti_is_refused_naming_the_file(tmp_path: Path, data: np.ndarray, expected: str):
    with pytest.raises(GliomasegError, match=expected):
        read_volume(_nifti_file(tmp_path / "v.nii.gz", data))


@pytest.mark.parametrize(
    ("shape", "warned"),
    [((48, 40, 20), False), ((48, 40, 160), True), ((200, 40, 20), True)],
    ids=["axial", "slice-axis-longest", "in-plane-elongated"],
)
def test_transposed_looking_nifti_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, shape: tuple[int, int, int], warned: bool
):
    # Only a header without orientation is read as stored (else the affine turns it: nothing to warn about).
    volume = read_volume(_nifti_file(tmp_path / "v.nii.gz", np.ones(shape, np.uint8), affine=None))
    assert volume.shape == (shape[2], shape[0], shape[1], 3)
    assert ("axes look transposed" in caplog.text) is warned
    assert not warned or "v.nii.gz" in caplog.text and "numpy.moveaxis" in caplog.text


# -------------------------------------------------------------------------- links and output names
def test_link_loops_are_searched_once(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    folder = tmp_path / "in" / "P"
    folder.mkdir(parents=True)
    Image.fromarray(_rgb(32, 32)).save(folder / "P_1.png")
    (folder / "loop").symlink_to(folder)  # P/loop -> P
    (folder / "self.png").symlink_to(folder / "self.png")  # a link to itself
    (tmp_path / "in" / "again").symlink_to(tmp_path / "in")  # in/again -> in
    cases = discover_inputs([tmp_path / "in", folder], tmp_path / "out")
    assert [(c.name, c.files) for c in cases] == [("P", [folder / "P_1.png"])]
    assert caplog.text.count("searched already") == 3  # P/loop, in/again, and the input P given again
    assert "self.png: a broken link or a link loop" in caplog.text


@pytest.mark.parametrize("given", ["..", ".", "sub/.."])
def test_output_names_stay_inside_the_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(32, 32)).save(work / "scan_1.png")
    monkeypatch.chdir(work / "sub" if given == ".." else work)
    out = tmp_path / "out"
    cases = discover_inputs([given], out)
    targets = [t for case in cases for t in case.targets]
    assert targets and all(t.resolve().is_relative_to(out.resolve()) for t in targets)
    assert {t.parent.name for t in targets} == {"work"}


def test_a_link_inside_the_output_folder_cannot_lead_outside(tmp_path: Path):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "P_1.png")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / tmp_path.name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(GliomasegError, match=r"outside the output folder .*out"):
        discover_inputs([tmp_path], out)
