"""DICOM series as prediction inputs: a folder holding one series or a whole study, read into a :class:`Volume`.

The folder is searched recursively; every file that parses as a DICOM image counts (any name, with or
without ``.dcm``), anything else is skipped. Images are grouped by SeriesInstanceUID and listed
(:func:`list_series`, :func:`format_series_table`); the FLAIR series is picked by its
SeriesDescription, ProtocolName or SequenceName (``FLAIR``, ``T2 FLAIR``, ``DARK FLUID``, ``T2_TIRM``...)
unless ``series`` names another (its number in the listing, its SeriesInstanceUID or its description).
Series that cannot make a volume are refused with the reason (checks in
:mod:`gliomaseg.inference.dicom_frames`): localizers (ImageType ``LOCALIZER``, or too few slices),
mixed orientations, sizes or pixel spacings, a missing slice (a gap along the slice normal), several
images at one position, uneven slice spacing.

Slices are ordered by their position along the slice normal (ImagePositionPatient . normal), never by
InstanceNumber or file name; each slice's RescaleSlope/RescaleIntercept is applied; enhanced
multi-frame images are read frame by frame from their functional groups (PlanePositionSequence,
PlaneOrientationSequence, PixelMeasuresSequence, PixelValueTransformationSequence).

The volume's array is ``X x Y x Z x 1`` float32 with ``X`` = columns, ``Y`` = rows, ``Z`` = slices in
position order (``array[i, j, k]`` is row ``j``, column ``i`` of slice ``k``), and its affine maps to
RAS+ (DICOM's LPS with x and y negated). ``extra`` holds what a DICOM SEG writer needs: ``datasets``
(the source headers, pixel data dropped: one per slice in slice order, or the one enhanced file),
``frames`` (per slice, its 0-based frame in that file, or None), ``files`` (per slice, its file),
``series_uid`` and ``description``. Nothing from the header that names the patient is logged.

Why pydicom rather than a series reader (SimpleITK's ``ImageSeriesReader``, dicom2nifti): those sort
and stack silently, without refusing gaps, localizers or mixed stacks, and without the per-frame
groups of enhanced files; pydicom gives every header, which the checks and the DICOM SEG writer need.
SimpleITK (GDCM) decodes the pixel data pydicom cannot without optional plugins (JPEG, JPEG 2000).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.data.io import IMAGE_SUFFIXES
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.dicom_frames import Frame2D, describe, frames_of, stack_affine, stack_problem
from gliomaseg.inference.nifti import nifti_stem
from gliomaseg.inference.volume import Volume

__all__ = ["FLAIR_PATTERN", "SeriesInfo", "format_series_table", "is_dicom", "list_series", "one_study", "read_dicom"]

log = logging.getLogger(__name__)

#: Names of FLAIR series (SeriesDescription, ProtocolName, SequenceName) across vendors.
FLAIR_PATTERN = re.compile(r"flair|dark[\s_-]*fluid|fluid[\s_-]*att|tirm|t2[\s_-]*fl(?:\b|_)", re.IGNORECASE)
_DICOMDIR_UID = "1.2.840.10008.1.3.10"


@dataclass
class SeriesInfo:
    """One series of a study folder, as listed (nothing but headers read).

    Attributes:
        number: its position in the listing (1-based; series sorted by SeriesNumber).
        uid: SeriesInstanceUID.
        description: SeriesDescription (else ProtocolName), may be empty.
        plane: ``axial``, ``coronal``, ``sagittal`` or ``oblique`` (slice normal more than 25 degrees off).
        axcodes: where (column, row, slice) indices point, e.g. ``LPS``.
        slices: number of 2D images.
        size: rows x columns.
        spacing: voxel size (column, row, slice) in mm (the slice step from the positions).
        problem: why it cannot be read as a volume, or None.
        flair: its name says FLAIR.
    """

    number: int
    uid: str
    description: str
    plane: str
    axcodes: str
    slices: int
    size: tuple[int, int]
    spacing: tuple[float, float, float]
    problem: str | None
    flair: bool
    files: list[Path] = field(repr=False)
    datasets: list[Any] = field(repr=False)
    frames: list[Frame2D] = field(repr=False)
    affine: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> str:
        """One line: ``3 'AX FLAIR' (axial LPS, 24 slices, 256 x 256, 0.9 x 0.9 x 5.0 mm)``."""
        spacing = " x ".join(f"{s:.2g}" for s in self.spacing)
        what = f"{self.plane} {self.axcodes}, {self.slices} slices, {self.size[0]} x {self.size[1]}, {spacing} mm"
        return f"{self.number} {self.description!r} ({what}{'; ' + self.problem if self.problem else ''})"


def is_dicom(path: Path) -> bool:
    """True when the file starts like a DICOM file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _files(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` (hidden ones left out) in name order; a file is itself."""
    if folder.is_file():
        yield folder
        return
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(root) / name


def _series(number: int, uid: str, members: list[tuple[Path, Any]]) -> SeriesInfo:
    files = [p for p, _ in members]
    datasets = [ds for _, ds in members]
    frames = [f for i, ds in enumerate(datasets) for f in frames_of(ds, i)]
    first = datasets[0]
    description = str(first.get("SeriesDescription", "") or first.get("ProtocolName", "") or "").strip()
    names = " ".join(
        str(first.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName")
    )
    problem = stack_problem(frames)
    affine = stack_affine(frames) if not any(np.isnan(f.position).any() for f in frames) else None
    plane, axcodes = describe(affine) if affine is not None else ("unknown", "???")
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)) if affine is not None else (0.0,) * 3
    return SeriesInfo(
        number, uid, description, plane, axcodes, len(frames), frames[0].size, spacing,  # type: ignore[arg-type]
        problem, bool(FLAIR_PATTERN.search(names)), files, datasets, frames, None if problem else affine,
    )  # fmt: skip


def one_study(folder: Path, skip: Path | None = None) -> bool:
    """True when ``folder`` (sub-folders included) holds DICOM files of one study and no slice image or NIfTI.

    One header per folder is read (its StudyInstanceUID): a study exported as one folder per series is
    one case, a folder of several patients' studies is not.

    Args:
        folder: the folder.
        skip: a folder below it not to search (the output folder).
    """
    import pydicom

    studies: set[str] = set()
    for root, dirs, names in os.walk(folder):
        dirs[:] = [
            d for d in dirs if not d.startswith((".", "__")) and (skip is None or Path(root, d).resolve() != skip)
        ]
        sampled = False
        for name in sorted(names):
            path = Path(root) / name
            if nifti_stem(path) is not None or path.suffix.lower() in IMAGE_SUFFIXES:
                return False
            if not sampled and is_dicom(path):
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                except Exception:  # noqa: BLE001 - a damaged file: the reader names it later
                    continue
                if ds.get("StudyInstanceUID"):  # a DICOMDIR has none
                    studies.add(str(ds.StudyInstanceUID))
                    sampled = True
    return len(studies) == 1


def list_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every image series under ``folder`` (recursive; headers only), sorted by SeriesNumber.

    Raises:
        GliomasegError: ``folder`` holds no DICOM image.
    """
    import pydicom

    folder = Path(folder)
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for path in _files(folder):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM (or unreadable): skipped, as the docstring says
            continue
        if ds.get("SOPClassUID") == _DICOMDIR_UID or "Rows" not in ds or "SeriesInstanceUID" not in ds:
            continue  # a DICOMDIR, a report or presentation state: no image
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    if not groups:
        raise GliomasegError(f"{folder}: no DICOM image found (searched every file below it)")

    def order(item: tuple[str, list[tuple[Path, Any]]]) -> tuple[int, str, str]:
        ds = item[1][0][1]
        number = ds.get("SeriesNumber")
        return (int(number) if number not in (None, "") else 1 << 30, str(ds.get("SeriesDescription", "")), item[0])

    return [_series(n, uid, members) for n, (uid, members) in enumerate(sorted(groups.items(), key=order), 1)]


def format_series_table(series: list[SeriesInfo]) -> str:
    """The listing as a text table: number, description, orientation, slices, size, spacing, FLAIR?, problem."""
    rows = [("#", "description", "orientation", "slices", "size", "spacing (mm)", "FLAIR", "problem")]
    for s in series:
        rows.append(
            (
                str(s.number), s.description or "-", f"{s.plane} {s.axcodes}", str(s.slices),
                f"{s.size[0]} x {s.size[1]}", " x ".join(f"{v:.3g}" for v in s.spacing),
                "yes" if s.flair else "", s.problem or "",
            )
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _pick(folder: Path, series: list[SeriesInfo], choice: str | None) -> SeriesInfo:
    readable = [s for s in series if s.problem is None]
    listing = "; ".join(s.summary() for s in series)
    if choice is not None:
        text = str(choice).strip()
        found = [s for s in series if s.uid == text or (text.isdigit() and s.number == int(text))]
        found = found or [s for s in series if s.description.casefold() == text.casefold()]
        if len(found) != 1:
            why = "matches several series" if found else "matches no series"
            raise GliomasegError(f"{folder}: --series {text!r} {why}; give a number or UID: {listing}")
        picked = found[0]
        if picked.problem:
            raise GliomasegError(f"{folder}: series {picked.summary()} cannot be read: {picked.problem}")
        return picked
    flair = [s for s in readable if s.flair]
    if flair:
        # Prefer acquired over derived (reformatted) images, then axial (no reslicing), then more slices.
        def rank(s: SeriesInfo) -> tuple[bool, bool, int]:
            derived = "DERIVED" in [str(t).upper() for t in s.datasets[0].get("ImageType", [])]
            return derived, s.plane != "axial", -s.slices

        picked = min(flair, key=rank)
    elif len(readable) == 1:
        picked = readable[0]
        log.warning("%s: no series is named FLAIR; using the only readable one, %s", folder, picked.summary())
        return picked
    else:
        refused = [s for s in series if s.flair and s.problem] or (series if len(series) == 1 else [])
        if refused:
            others = [s for s in readable if s not in refused]
            rest = f"; other series (choose with --series): {'; '.join(s.summary() for s in others)}" if others else ""
            raise GliomasegError(f"{folder}: cannot read {'; '.join(s.summary() for s in refused)}{rest}")
        raise GliomasegError(
            f"{folder}: no readable series is named FLAIR; choose one with --series NUMBER|UID|DESCRIPTION: {listing}"
        )
    return picked


def read_dicom(folder: str | os.PathLike[str], series: str | None = None) -> Volume:
    """Read the FLAIR series (or the chosen one) of a DICOM folder into a :class:`Volume`.

    Args:
        folder: a folder holding one series or a whole study (searched recursively), or one DICOM file
            (e.g. an enhanced multi-frame image).
        series: None (pick FLAIR by name), or the series' number in the listing, its SeriesInstanceUID
            or its description.

    Returns:
        ``X x Y x Z x 1`` float32 (columns, rows, slices by position; rescale applied), affine in RAS,
        kind ``dicom`` (see the module docstring for ``extra``).

    Raises:
        GliomasegError: no DICOM image, no FLAIR series and no ``series`` (the message lists them), a
            ``series`` that matches none or several, a series that is not one evenly spaced stack, or
            pixel data that cannot be decoded.
    """
    folder = Path(folder)
    found = list_series(folder)
    picked = _pick(folder, found, series)
    if len(found) > 1:
        log.info("%s: %d series\n%s", folder, len(found), format_series_table(found))
    log.info(
        "%s: reading series %s%s",
        folder,
        picked.summary(),
        "" if series is not None else " as FLAIR (--series to choose another)",
    )
    array = _pixels(folder, picked)
    datasets = [picked.datasets[f.index] for f in picked.frames] if picked.frames[0].frame is None else picked.datasets
    extra = {
        "datasets": datasets,
        "frames": [f.frame for f in picked.frames],
        "files": [picked.files[f.index] for f in picked.frames],
        "series_uid": picked.uid,
        "description": picked.description,
    }
    return Volume(array[..., None], picked.affine, folder, "dicom", True, extra)  # type: ignore[arg-type]


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """A file's pixel data as ``frames x rows x cols`` and whether the rescale is applied already."""
    import pydicom

    try:
        data = pydicom.dcmread(path).pixel_array
        return (data[None] if data.ndim == 2 else data), False
    except Exception as err:  # noqa: BLE001 - pydicom lacks a decoder: GDCM (SimpleITK) may have it
        import SimpleITK as sitk

        try:
            # GDCM applies RescaleSlope/Intercept itself.
            return sitk.GetArrayFromImage(sitk.ReadImage(str(path))), True
        except Exception:  # noqa: BLE001
            raise GliomasegError(
                f"{path}: cannot decode its pixel data ({type(err).__name__}: {err}); convert the series to an "
                "uncompressed transfer syntax (e.g. gdcmconv --raw) and try again"
            ) from None


def _pixels(folder: Path, series: SeriesInfo) -> np.ndarray:
    """``columns x rows x slices`` float32 of the (sorted) frames, each frame's rescale applied."""
    rows, cols = series.size
    out = np.empty((cols, rows, len(series.frames)), np.float32)
    cache: dict[int, tuple[np.ndarray, bool]] = {}
    for k, frame in enumerate(series.frames):
        if frame.index not in cache:
            cache = {frame.index: _decode(series.files[frame.index])}  # one file in memory at a time
        data, rescaled = cache[frame.index]
        image = data[frame.frame or 0].astype(np.float32)
        if image.shape != (rows, cols):
            raise GliomasegError(f"{series.files[frame.index]}: pixel data {image.shape} differ from its header")
        out[:, :, k] = (image if rescaled else image * frame.slope + frame.intercept).T
    return out
