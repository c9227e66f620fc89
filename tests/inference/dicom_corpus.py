"""Builders of DICOM test data made on the fly (never public scans): series written with pydicom from a volume.

Reusable by any test (``from tests.inference.dicom_corpus import ...`` or via ``conftest``-free import by
path). A volume is ``X x Y x Z`` with a RAS affine (nibabel's convention); :func:`write_series` writes it
as a classic MR series (one file per slice) or, with ``enhanced=True``, as one multi-frame file
(highdicom's legacy-converted enhanced MR: per-frame functional groups). :func:`phantom` gives a head
phantom in kaggle_3m's frame as such a volume; :func:`build_corpus` writes every case of issue 24's list.

Fake identifiers only (``PatientName`` ``Phantom^Test``): the point of some tests is that they never
reach file names or logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
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


def write_series(
    folder: Path,
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    description: str = "AX T2 FLAIR",
    number: int = 1,
    slope: float = 1.0,
    intercept: float = 0.0,
    shuffle: bool = False,
    suffix: str = ".dcm",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "NONE"),
    uids: dict[str, str] | None = None,
    drop: Sequence[int] = (),
    enhanced: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write ``volume`` (``X x Y x Z``, RAS ``affine``) as one MR series in ``folder``.

    Args:
        folder: where the files go (created).
        volume: the values to store (after rescale): ``stored = round((value - intercept) / slope)``, uint16.
        affine: voxel -> RAS; column 0 is along a DICOM row, column 1 down the columns, column 2 the slice step.
        description: SeriesDescription and ProtocolName.
        number: SeriesNumber.
        slope, intercept: RescaleSlope / RescaleIntercept.
        shuffle: random file names without suffix and InstanceNumbers in random order.
        suffix: the file suffix when not shuffled.
        image_type: ImageType.
        uids: ``study``, ``frame`` (and optionally ``series``) UIDs to share between series of one study.
        drop: slice indices to leave out (a missing slice).
        enhanced: one multi-frame file (highdicom's legacy-converted enhanced MR) instead.
        seed: for UIDs and the shuffle.

    Returns:
        The files written.
    """
    rng = np.random.default_rng(seed)
    uids = {"study": _uid(rng), "frame": _uid(rng), **(uids or {})}
    uids.setdefault("series", _uid(rng))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)
    col_sp, row_sp = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = np.concatenate([lps[:3, 0] / col_sp, lps[:3, 1] / row_sp])
    stored = np.clip(np.rint((np.asarray(volume, float) - intercept) / slope), 0, 65535)
    keep = [k for k in range(volume.shape[2]) if k not in set(drop)]
    instances = rng.permutation(len(keep)) + 1 if shuffle else np.arange(1, len(keep) + 1)
    datasets = [
        _slice_dataset(
            stored[:, :, k].T, (lps @ [0, 0, k, 1])[:3], orientation, (row_sp, col_sp), np.linalg.norm(lps[:3, 2]),
            uids, description=description, number=number, instance=int(instances[i]), image_type=image_type,
            slope=slope, intercept=intercept, sop_uid=_uid(rng),
        )
        for i, k in enumerate(keep)
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    if enhanced:
        from highdicom.legacy import LegacyConvertedEnhancedMRImage

        multi = LegacyConvertedEnhancedMRImage(datasets, uids["series"], number, _uid(rng), 1)
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
        ImagePositionPatient=[float(v) for v in (np.diag([-1, -1, 1, 1]) @ affine @ [0, 0, n // 2 + 0.4, 1])[:3]],
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
