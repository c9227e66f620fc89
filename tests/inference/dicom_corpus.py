"""DICOM test data made on the fly with pydicom (never public scans), and its geometry worked out apart
from gliomaseg's reader and writers.

Any test imports it as ``from tests.inference.dicom_corpus import ...``. A volume is ``X x Y x Z`` with a
RAS affine (nibabel's convention; :func:`series_affine` makes one from DICOM's own terms):
:func:`mr_datasets` turns it into one single-frame MR dataset per slice, :func:`write_series` writes
those as a classic series (one file per slice) or, with ``enhanced=True``, as one multi-frame file
(highdicom's legacy-converted enhanced MR: per-frame functional groups). :func:`phantom` gives a head
phantom in kaggle_3m's frame as such a volume; :func:`build_corpus` writes every case of issue 24's list.

The other way, :func:`dicom_volume` builds the :class:`~gliomaseg.inference.volume.Volume` a reader
would return for a series, so that the writers can be tested without the reader.

Fake identifiers only (:data:`PATIENT_NAME`, :data:`PATIENT_ID`, accession ``ACC-SECRET``): the point
of some tests is that they never reach file names or logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Fake identifiers written into every file; tests check they never appear in outputs or logs.
PATIENT_NAME = "Phantom^Secret"
PATIENT_ID = "PID-0123456789"


def phantom(
    seed: int = 0, slices: int = 12, size: int = 64, spacing: float = 3.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phantom head as a standard axial volume: ``(flair X x Y x Z float32, mask X x Y x Z bool, affine)``.

    Standard axial DICOM (columns to the patient's left, rows to posterior) is kaggle_3m's frame, so
    ``X`` = the phantom's columns, ``Y`` = its rows, ``Z`` = its slices (inferior -> superior).
    """
    from gliomaseg.data.phantoms import synthesise_volume

    image, mask = synthesise_volume(np.random.default_rng(seed), slices, size)
    flair = image[..., 1].transpose(2, 1, 0).astype(np.float32) * 4.0  # some range beyond uint8
    pixel = 240.0 / size
    affine = np.array([[-pixel, 0, 0, 120.0], [0, -pixel, 0, 110.0], [0, 0, spacing, -40.0], [0, 0, 0, 1]], dtype=float)
    return flair, mask.transpose(2, 1, 0).astype(bool), affine


def rotation(degrees: float, axis: int = 0) -> np.ndarray:
    """A 4 x 4 rotation about world axis ``axis`` (0 = left-right: tilts axial towards coronal)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [i for i in range(3) if i != axis]
    out = np.eye(4)
    out[a, a], out[a, b], out[b, a], out[b, b] = c, -s, s, c
    return out


def series_affine(
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    row_dir: Sequence[float] = (1.0, 0.0, 0.0),
    col_dir: Sequence[float] = (0.0, 1.0, 0.0),
    origin: Sequence[float] = (-100.0, -120.0, 30.0),
) -> np.ndarray:
    """The RAS affine of a series given in DICOM's terms (LPS directions and positions).

    Args:
        spacing: ``(row spacing, column spacing, slice step)`` in mm (DICOM PixelSpacing order first).
        row_dir: direction of increasing column index (the first three of ImageOrientationPatient).
        col_dir: direction of increasing row index (orthogonal to ``row_dir``).
        origin: ImagePositionPatient of slice 0.

    Returns:
        ``4 x 4`` voxel -> RAS for a volume ``X`` (columns) ``x Y`` (rows) ``x Z`` (slices along row x col).
    """
    row, col = (np.asarray(v, float) / np.linalg.norm(v) for v in (row_dir, col_dir))
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[1], col * spacing[0], np.cross(row, col) * spacing[2]
    lps[:3, 3] = origin
    return _LPS_TO_RAS @ lps


def _uid(rng: np.random.Generator) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(rng.integers(1 << 62))])


def _slice_dataset(
    pixels: np.ndarray,
    position: np.ndarray,
    orientation: np.ndarray,
    spacing: tuple[float, float],
    thickness: float,
    uids: dict[str, str],
    *,
    description: str,
    number: int,
    instance: int,
    image_type: Sequence[str],
    slope: float,
    intercept: float,
    sop_uid: str,
):  # noqa: ANN202
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, "O", "19700101"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "ACC-SECRET"
    ds.ReferringPhysicianName, ds.Manufacturer = "", "gliomaseg-tests"
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240101"
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "120000"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", number, instance
    ds.SeriesDescription = ds.ProtocolName = description
    ds.ImageType = list(image_type)
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
    ds.EchoTime, ds.RepetitionTime, ds.MagneticFieldStrength = 100.0, 9000.0, 3.0
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = float(thickness)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def mr_datasets(
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    description: str = "AX T2 FLAIR",
    number: int = 1,
    slope: float = 1.0,
    intercept: float = 0.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "NONE"),
    uids: dict[str, str] | None = None,
    seed: int = 0,
) -> list:
    """``volume`` (``X x Y x Z``, RAS ``affine``) as single-frame MR datasets of one series, in slice order.

    Args:
        volume: the values to store (after rescale): ``stored = round((value - intercept) / slope)``, uint16.
        affine: voxel -> RAS; column 0 is along a DICOM row, column 1 down the columns, column 2 the slice step.
        description: SeriesDescription and ProtocolName.
        number: SeriesNumber.
        slope, intercept: RescaleSlope / RescaleIntercept.
        image_type: ImageType.
        uids: ``study``, ``frame`` (and optionally ``series``) UIDs to share between series of one study.
        seed: for the UIDs.

    Returns:
        One pydicom dataset per slice ``k`` (``pixel_array`` = ``stored[:, :, k].T``), instance numbers 1..Z.
    """
    rng = np.random.default_rng(seed)
    uids = {"study": _uid(rng), "frame": _uid(rng), **(uids or {})}
    uids.setdefault("series", _uid(rng))
    lps = _LPS_TO_RAS @ np.asarray(affine, float)
    col_sp, row_sp = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = np.concatenate([lps[:3, 0] / col_sp, lps[:3, 1] / row_sp])
    stored = np.clip(np.rint((np.asarray(volume, float) - intercept) / slope), 0, 65535)
    return [
        _slice_dataset(
            stored[:, :, k].T, (lps @ [0, 0, k, 1])[:3], orientation, (row_sp, col_sp), np.linalg.norm(lps[:3, 2]),
            uids, description=description, number=number, instance=k + 1, image_type=image_type,
            slope=slope, intercept=intercept, sop_uid=_uid(rng),
        )
        for k in range(volume.shape[2])
    ]  # fmt: skip


def write_series(
    folder: Path,
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    shuffle: bool = False,
    suffix: str = ".dcm",
    drop: Sequence[int] = (),
    enhanced: bool = False,
    seed: int = 0,
    **header: Any,
) -> list[Path]:
    """Write ``volume`` (``X x Y x Z``, RAS ``affine``) as one MR series in ``folder``.

    Args:
        folder: where the files go (created).
        volume: the values to store (see :func:`mr_datasets`).
        affine: voxel -> RAS (see :func:`mr_datasets`).
        shuffle: random file names without suffix and InstanceNumbers in random order.
        suffix: the file suffix when not shuffled.
        drop: slice indices to leave out (a missing slice).
        enhanced: one multi-frame file (highdicom's legacy-converted enhanced MR) instead.
        seed: for UIDs and the shuffle.
        **header: ``description``, ``number``, ``slope``, ``intercept``, ``image_type``, ``uids`` of
            :func:`mr_datasets`.

    Returns:
        The files written, in slice order.
    """
    rng = np.random.default_rng((seed, 1))  # apart from mr_datasets' stream of UIDs
    datasets = [ds for k, ds in enumerate(mr_datasets(volume, affine, seed=seed, **header)) if k not in set(drop)]
    if shuffle:
        for ds, instance in zip(datasets, rng.permutation(len(datasets)) + 1):
            ds.InstanceNumber = int(instance)
    folder.mkdir(parents=True, exist_ok=True)
    if enhanced:
        from highdicom.legacy import LegacyConvertedEnhancedMRImage

        first = datasets[0]
        multi = LegacyConvertedEnhancedMRImage(datasets, first.SeriesInstanceUID, first.SeriesNumber, _uid(rng), 1)
        path = folder / f"enhanced{suffix}"
        multi.save_as(path, enforce_file_format=True)
        return [path]
    paths = []
    for i, ds in enumerate(datasets):
        name = f"{rng.integers(1 << 40):x}" if shuffle else f"IM_{i:04d}{suffix}"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def build_corpus(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write issue 24's DICOM cases under ``root``, one folder each, all from one phantom.

    Returns:
        ``{case: folder}``: ``axial`` (the reference), ``shuffled`` (random names, no suffix, instance numbers
        shuffled, a text file beside), ``reversed`` (slices stored superior -> inferior), ``rescale``
        (slope 2.5, intercept -100), ``oblique`` (tilted 35 degrees), ``enhanced`` (one multi-frame file),
        ``localizer`` (a 3-slice localizer beside the FLAIR), ``localizer_only``, ``missing`` (a slice left
        out), ``mixed_orientation`` (one slice turned), ``uneven`` (one slice moved 40 % of the spacing),
        ``study`` (a T1 and a FLAIR series in sub-folders of one study: FLAIR picked, T1 selectable).
    """
    flair, _, affine = phantom(seed)
    n = flair.shape[2]
    out = {name: root / name for name in (
        "axial", "shuffled", "reversed", "rescale", "oblique", "enhanced", "localizer", "localizer_only",
        "missing", "mixed_orientation", "uneven", "study",
    )}  # fmt: skip
    write_series(out["axial"], flair, affine, seed=seed)
    write_series(out["shuffled"], flair, affine, shuffle=True, seed=seed + 1)
    (out["shuffled"] / "README.txt").write_text("not DICOM\n")
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, n - 1
    write_series(out["reversed"], flair[:, :, ::-1], affine @ flip, seed=seed + 2)
    write_series(out["rescale"], flair, affine, slope=2.5, intercept=-100.0, seed=seed + 3)
    write_series(out["oblique"], flair, rotation(35.0) @ affine, seed=seed + 4)
    write_series(out["enhanced"], flair, affine, enhanced=True, seed=seed + 5)
    uids = {"study": "1.2.826.0.1.3680043.8.498.1", "frame": "1.2.826.0.1.3680043.8.498.2"}
    write_series(out["localizer"] / "flair", flair, affine, uids=uids, number=3, seed=seed + 6)
    scout = flair[:, :, n // 2 - 1 : n // 2 + 2]
    for target in (out["localizer"] / "scout", out["localizer_only"]):
        write_series(
            target, scout, affine, description="localizer", number=1, uids=uids,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), seed=seed + 7,
        )  # fmt: skip
    write_series(out["missing"], flair, affine, drop=[n // 2], seed=seed + 8)
    paths = write_series(out["mixed_orientation"], flair, affine, seed=seed + 9)
    _edit(paths[n // 2], ImageOrientationPatient=[0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    paths = write_series(out["uneven"], flair, affine, seed=seed + 10)
    _edit(
        paths[n // 2],
        ImagePositionPatient=[float(v) for v in (_LPS_TO_RAS @ affine @ [0, 0, n // 2 + 0.4, 1])[:3]],
    )
    t1 = np.clip(1000.0 - flair, 0, None)
    write_series(out["study"] / "s1", t1, affine, description="AX T1 SE", number=1, uids=uids, seed=seed + 11)
    write_series(
        out["study"] / "s2", flair, affine, description="t2_tirm_tra_dark-fluid", number=2, uids=uids, seed=seed + 12
    )
    return out


def _edit(path: Path, **changes: object) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


def compress_jpeg_lossless(paths: Sequence[Path]) -> None:
    """Re-encode the files' pixel data as JPEG Lossless (process 14), as many PACS exports are.

    GDCM (SimpleITK) writes the encapsulated frame; the file keeps every other attribute. pydicom
    cannot decode this transfer syntax without optional plugins, so it exercises the GDCM fallback.
    """
    import tempfile

    import pydicom
    import SimpleITK as sitk

    for path in paths:
        ds = pydicom.dcmread(path)
        image = sitk.GetImageFromArray(ds.pixel_array.astype(np.uint16)[None])
        with tempfile.TemporaryDirectory() as tmp:
            writer = sitk.ImageFileWriter()
            writer.SetImageIO("GDCMImageIO")
            writer.SetFileName(str(Path(tmp) / "c.dcm"))
            writer.SetUseCompression(True)
            writer.SetCompressor("JPEG")
            writer.Execute(image)
            compressed = pydicom.dcmread(Path(tmp) / "c.dcm")
        ds.file_meta.TransferSyntaxUID = compressed.file_meta.TransferSyntaxUID
        ds.PixelData = compressed.PixelData
        ds["PixelData"].is_undefined_length = True
        ds.save_as(path, enforce_file_format=True)


def read_back(paths: Sequence[Path]) -> list:
    """The datasets read from files, in the given order."""
    import pydicom

    return [pydicom.dcmread(p) for p in paths]


def dicom_volume(datasets: Sequence[Any], source: Path = Path("series")) -> Any:
    """The :class:`~gliomaseg.inference.volume.Volume` of a series in slice order, as a reader would give it:
    ``X x Y x Z x 1`` with X along columns (``array[i, j, k] = datasets[k].pixel_array[j, i]``), RAS affine."""
    from gliomaseg.inference.volume import Volume
    from gliomaseg.inference.writers import DICOM_DATASETS

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
    array = np.stack([ds.pixel_array.T for ds in datasets], axis=-1)[..., None]
    return Volume(array, _LPS_TO_RAS @ affine, source, "dicom", extra={DICOM_DATASETS: list(datasets)})
