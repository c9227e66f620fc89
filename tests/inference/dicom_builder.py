"""Small DICOM MR series made on the fly for the writer tests (never from public scans).

:func:`mr_series` turns a ``Z x R x C`` array into single-frame MR Image datasets with a chosen
geometry; :func:`dicom_volume` builds the :class:`~gliomaseg.inference.volume.Volume` a DICOM reader
would return for them (``array[i, j, k] = datasets[k].pixel_array[j, i]``, RAS affine), so the
writers can be tested before and independently of the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from gliomaseg.inference.volume import Volume
from gliomaseg.inference.writers import DICOM_DATASETS

__all__ = ["dicom_volume", "mr_series", "read_back", "save_series"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def mr_series(
    pixels: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    row_dir: Sequence[float] = (1.0, 0.0, 0.0),
    col_dir: Sequence[float] = (0.0, 1.0, 0.0),
    origin: Sequence[float] = (-100.0, -120.0, 30.0),
    description: str = "AX FLAIR",
) -> list[Dataset]:
    """Single-frame MR datasets of one series, in slice order.

    Args:
        pixels: ``Z x R x C`` uint16 slices.
        spacing: ``(row spacing, column spacing, slice step)`` in mm (DICOM PixelSpacing order first).
        row_dir: direction (LPS) of increasing column index (the first three of ImageOrientationPatient).
        col_dir: direction (LPS) of increasing row index.
        origin: ImagePositionPatient of slice 0 (LPS mm).
        description: SeriesDescription.

    Returns:
        One dataset per slice, slice ``k`` at ``origin + k * step * normal``, with instance numbers 1..Z.
    """
    row, col = _unit(row_dir), _unit(col_dir)
    normal = np.cross(row, col)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k, plane in enumerate(np.asarray(pixels, np.uint16)):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "PHANTOM01", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "MR", "phantom", 3, k + 1
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.ImagePositionPatient = [float(x) for x in np.asarray(origin, float) + k * spacing[2] * normal]
        ds.ImageOrientationPatient = [float(x) for x in (*row, *col)]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = plane.tobytes()
        out.append(ds)
    return out


def save_series(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    """Write the datasets as ``folder/<n>.dcm`` and read them back (as a reader would hold them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        path = folder / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dicom_volume(datasets: Sequence[Dataset], source: Path = Path("series")) -> Volume:
    """The :class:`Volume` of a series in slice order: ``X x Y x Z x 1`` with X along columns, RAS affine."""
    first, last = datasets[0], datasets[-1]
    row, col = (
        np.asarray(first.ImageOrientationPatient[:3], float),
        np.asarray(first.ImageOrientationPatient[3:], float),
    )
    dr, dc = (float(x) for x in first.PixelSpacing)
    origin = np.asarray(first.ImagePositionPatient, float)
    n = len(datasets)
    step = (np.asarray(last.ImagePositionPatient, float) - origin) / max(n - 1, 1)
    if n == 1:
        step = np.cross(row, col) * float(first.SliceThickness)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row * dc, col * dr, step
    affine[:3, 3] = origin
    affine[:3] = _LPS_TO_RAS @ affine[:3]
    array = np.stack([ds.pixel_array.T for ds in datasets], axis=-1)[..., None]
    return Volume(array, affine, source, "dicom", extra={DICOM_DATASETS: list(datasets)})


def read_back(paths: Sequence[Path]) -> list[Dataset]:
    """The datasets read from files, in the given order."""
    return [pydicom.dcmread(p) for p in paths]
