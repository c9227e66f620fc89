"""Several sequences per case: names -> channels, FLAIR alone, grids shared or resampled, and discovery."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliomaseg.errors import GliomasegError
from gliomaseg.inference.inputs import discover_inputs, read_case
from gliomaseg.inference.sequences import read_sequences, sequence_role

AFFINE = np.array([[0.0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])  # the model's frame


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BraTS_001_flair.nii.gz", ("BraTS_001", "flair")),
        ("p1_T1.nii", ("p1", "pre")),
        ("p1-t1ce.nii.gz", ("p1", "post")),
        ("p1_t1c.nii.gz", ("p1", "post")),
        ("p1_t1gd.nii.gz", ("p1", "post")),
        ("p1_t2.nii.gz", ("p1", "t2")),
        ("case_0000.nii.gz", ("case", "flair")),
        ("case_0001.nii.gz", ("case", "pre")),
        ("case_0002.nii.gz", ("case", "post")),
        ("brain.nii.gz", None),
        ("flair.nii.gz", None),
    ],
)
def test_sequence_names(name: str, expected):
    assert sequence_role(Path(name)) == expected


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def test_channels_follow_the_names_and_missing_ones_copy_flair(tmp_path: Path):
    rng = np.random.default_rng(0)
    flair, t1 = rng.normal(100, 10, (2, 40, 36, 4))
    files = {"flair": _save(tmp_path / "a_flair.nii.gz", flair), "pre": _save(tmp_path / "a_t1.nii.gz", t1)}
    volume = read_sequences(files)
    assert volume.array.shape == (40, 36, 4, 3)
    np.testing.assert_allclose(volume.array[..., 0], t1, rtol=1e-6)
    np.testing.assert_allclose(volume.array[..., 1], flair, rtol=1e-6)
    np.testing.assert_allclose(volume.array[..., 2], flair, rtol=1e-6)  # no post-contrast: FLAIR, as in training


def test_a_sequence_on_another_grid_is_resampled_onto_flairs(tmp_path: Path):
    z = np.arange(40, dtype=np.float32)[:, None, None] * np.ones((1, 36, 4), np.float32)
    flair = _save(tmp_path / "b_flair.nii.gz", z)
    # The same world, stored with the first axis reversed: the values come back onto FLAIR's grid.
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, 39
    t1ce = _save(tmp_path / "b_t1ce.nii.gz", z[::-1], AFFINE @ flip)
    volume = read_sequences({"flair": flair, "post": t1ce})
    np.testing.assert_allclose(volume.array[..., 2], z, atol=1e-4)


def test_grid_mismatch_without_orientation_is_refused(tmp_path: Path):
    flair = tmp_path / "c_flair.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((40, 36, 4), np.float32), None), flair)
    t1 = tmp_path / "c_t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((40, 34, 4), np.float32), None), t1)
    with pytest.raises(GliomasegError, match="header gives no orientation"):
        read_sequences({"flair": flair, "pre": t1})


def test_discovery_groups_sequence_files_in_folders_and_on_the_command_line(tmp_path: Path):
    rng = np.random.default_rng(1)
    for name in ("a_flair", "a_t1", "a_t1ce", "a_t2", "b_0000", "lone_t1", "other"):
        _save(tmp_path / f"{name}.nii.gz", rng.normal(100, 10, (40, 36, 4)))
    cases = discover_inputs([tmp_path], tmp_path / "out")
    by_name = {c.name: c for c in cases}
    # A T1 without FLAIR, or a FLAIR alone, stays its own case under its own name.
    assert sorted(by_name) == ["a", "b_0000", "lone_t1", "other"]
    assert set(by_name["a"].sequences) == {"flair", "pre", "post", "t2"}
    assert by_name["a"].masks == [tmp_path / "out" / tmp_path.name / "a_mask.nii.gz"]
    assert read_case(by_name["a"]).shape == (4, 40, 36, 3)
    given = discover_inputs([tmp_path / "a_flair.nii.gz", tmp_path / "a_t1.nii.gz"], tmp_path / "out2")
    assert [(c.name, sorted(c.sequences)) for c in given] == [("a", ["flair", "pre"])]


def test_two_files_for_one_sequence_are_refused(tmp_path: Path):
    for name in ("d_flair", "d_0000"):
        _save(tmp_path / f"{name}.nii.gz", np.ones((40, 36, 4)))
    with pytest.raises(GliomasegError, match="are both the flair sequence of case 'd'"):
        discover_inputs([tmp_path], tmp_path / "out")
