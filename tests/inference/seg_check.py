"""Checks a DICOM SEG against a mask, frame by frame, with each source frame's voxels found from its own
position, orientation and spacing (DICOM's LPS), apart from gliomaseg's writer.

Any test imports it as ``from tests.inference.seg_check import assert_seg_matches``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def _expected_frame(ds: Any, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The mask (``X x Y x Z`` on a NIfTI grid of RAS ``affine``) at every pixel of one source plane."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    row_dir, col_dir = (
        np.asarray(ds.ImageOrientationPatient[:3], float),
        np.asarray(ds.ImageOrientationPatient[3:], float),
    )
    dr, dc = (float(v) for v in ds.PixelSpacing)
    r, c = np.mgrid[:rows, :cols]
    lps = np.asarray(ds.ImagePositionPatient, float) + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir
    ras = lps * np.array([-1.0, -1.0, 1.0])
    ijk = np.rint((np.linalg.inv(affine) @ np.c_[ras.reshape(-1, 3), np.ones(rows * cols)].T)[:3]).astype(int)
    return mask[ijk[0], ijk[1], ijk[2]].reshape(rows, cols)


def _planes(ds: Any) -> list[Any]:
    """One plane (position, orientation, spacing, size) per frame of a source file, single- or multi-frame."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [ds]
    shared = ds.SharedFunctionalGroupsSequence[0]

    def group(frame: Any, name: str) -> Any:  # per-frame when there, else shared
        return (frame.get(name) or shared.get(name))[0]

    return [
        SimpleNamespace(
            Rows=ds.Rows,
            Columns=ds.Columns,
            ImagePositionPatient=group(f, "PlanePositionSequence").ImagePositionPatient,
            ImageOrientationPatient=group(f, "PlaneOrientationSequence").ImageOrientationPatient,
            PixelSpacing=group(f, "PixelMeasuresSequence").PixelSpacing,
        )
        for f in ds.PerFrameFunctionalGroupsSequence
    ]


def assert_seg_matches(seg_path: Path, sources: list[Any], mask: np.ndarray, affine: np.ndarray) -> Any:
    """Assert that a SEG references exactly ``sources`` and that each of their frames reads back as ``mask``.

    Args:
        seg_path: the DICOM SEG.
        sources: the source series' datasets (single-frame or enhanced multi-frame).
        mask: ``X x Y x Z`` bool on the grid of RAS ``affine`` (e.g. predict's NIfTI mask of the series).
        affine: ``4 x 4`` voxel -> RAS of ``mask``.

    Returns:
        The SEG read with highdicom, for further checks.
    """
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    referenced = {
        r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence
    }
    assert referenced == {ds.SOPInstanceUID for ds in sources}
    for ds in sources:
        planes = _planes(ds)
        if len(planes) > 1:  # enhanced multi-frame: the SEG's frames follow the source's own frame numbers
            numbers = list(range(1, len(planes) + 1))
            frames = seg.get_pixels_by_source_frame(
                ds.SOPInstanceUID, source_frame_numbers=numbers, segment_numbers=[1]
            )
        else:
            frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1])
        for plane, frame in zip(planes, frames[..., 0], strict=True):
            np.testing.assert_array_equal(frame > 0, _expected_frame(plane, mask, affine))
    return seg
