"""Turning the files a user uploads into one scan, through the same readers as ``predict``.

An upload is one of: a slice image, several slices of one patient (``<name>_<n>.<ext>``, as in
``kaggle_3m``), a zip of a patient folder, or a NIfTI volume. Files are found and read by
:func:`~gliomaseg.inference.inputs.discover_inputs` and :func:`~gliomaseg.inference.inputs.read_case`,
so the page segments exactly what ``gliomaseg predict`` would for the same files, and its mask
targets (the downloads) are the names ``predict`` writes.

Every problem (too large, unsupported, corrupt, more than one volume) raises
:class:`~gliomaseg.errors.GliomasegError` with a message meant for the page.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliomaseg.data.io import IMAGE_SUFFIXES, read_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.inputs import SUPPORTED_INPUTS, Case, discover_inputs, read_case
from gliomaseg.inference.limits import DEFAULT_LIMITS, LIMIT_FLAGS, Limits, check_case, image_size
from gliomaseg.inference.nifti import nifti_spacing, nifti_spacing_known
from gliomaseg.inference.outputs import case_volume
from gliomaseg.inference.volume import Volume

__all__ = ["UNZIP_FACTOR", "Scan", "check_sizes", "holds_dicom", "load_upload", "max_zip_members", "unzip_upload"]

#: A zip may unpack to at most this many times the upload limit (guards against zip bombs).
UNZIP_FACTOR = 4
_MB = 1024 * 1024


@dataclass
class Scan:
    """One uploaded volume, read, with where its downloads go.

    Attributes:
        case: the ``predict`` case (``case.volume`` is the ``S x H x W x 3`` uint8 volume;
            ``case.masks`` are the mask files ``predict`` would write, below ``work/out``).
        work: this upload's private folder (removed with the session).
        truth: ``S x H x W`` bool ground truth uploaded with the slices (``<stem>_mask.<ext>`` beside
            every slice in the zip or among the files, as in a kaggle_3m folder), or None.
    """

    case: Case
    work: Path
    truth: np.ndarray | None = None

    @property
    def volume(self) -> np.ndarray:
        """``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast)."""
        assert self.case.volume is not None
        return self.case.volume

    @property
    def geometry(self) -> Volume:
        """The scan in its own geometry (affine, voxel size): what ``predict`` measures and writes with."""
        return case_volume(self.case)

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """Voxel sizes in mm from the NIfTI header (``(dx, dy, dz)`` or ``(dx, dy)``); None for images and for
        a NIfTI whose header gives no voxel size (pixdim 0): sizes are then shown in voxels."""
        if self.case.kind != "nifti" or not nifti_spacing_known(self.case.nifti):
            return None
        return nifti_spacing(self.case.nifti)

    @property
    def slice_labels(self) -> list[str]:
        """A name per slice: the file stem for images, ``z=<index>`` (0-based, in the model's frame) for
        NIfTI and DICOM (a DICOM series' files are not its slices in the model's frame)."""
        if self.case.kind in ("nifti", "dicom"):
            return [f"z={z}" for z in range(self.volume.shape[0])]
        return [p.stem for p in self.case.files]


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / _MB:.1f} MB"


def check_sizes(paths: Sequence[Path], max_bytes: int) -> None:
    """Refuse uploads whose files together exceed ``max_bytes``.

    Raises:
        GliomasegError: naming the size, the limit and the server option that sets it.
    """
    total = sum(p.stat().st_size for p in paths)
    if total > max_bytes:
        names = ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise GliomasegError(
            f"the upload ({names}) is {_mb(total)}, over this server's limit of {_mb(max_bytes)}; "
            "upload fewer or smaller files, or restart the server with a larger --max-upload-mb"
        )


def max_zip_members(limits: Limits) -> int:
    """The most files a zip may hold: a slice and its mask per slice, and a few others."""
    return 2 * limits.max_slices + 16


def unzip_upload(path: Path, dest: Path, max_bytes: int, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Unpack an uploaded zip safely into ``dest``, its member count and declared sizes checked first.

    Args:
        path: the zip file.
        dest: an empty folder to unpack into (created).
        max_bytes: the upload limit; the unpacked size may be :data:`UNZIP_FACTOR` times it (the
            declared sizes are checked before extracting, and ``zipfile`` stops each member at its
            declared size).
        limits: the slice limit bounds the member count (:func:`max_zip_members`).

    Returns:
        ``dest``.

    Raises:
        GliomasegError: not a zip, corrupt, encrypted, too many members or too large unpacked.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
            if len(members) > max_zip_members(limits):
                flag = LIMIT_FLAGS["max_slices"]
                raise GliomasegError(
                    f"{path.name}: holds {len(members):,} files, over the {max_zip_members(limits):,} that "
                    f"{flag} {limits.max_slices:,} allows (a slice and its mask per slice); zip one patient folder, "
                    f"or raise the limit with gliomaseg {limits.command} {flag} N"
                )
            unpacked = sum(m.file_size for m in members)
            if unpacked > UNZIP_FACTOR * max_bytes:
                raise GliomasegError(
                    f"{path.name}: unpacks to {_mb(unpacked)}, over {UNZIP_FACTOR} x this server's upload limit "
                    f"({_mb(max_bytes)}); zip one patient folder"
                )
            if any(m.flag_bits & 0x1 for m in members):
                raise GliomasegError(f"{path.name}: the zip is encrypted; zip the folder without a password")
            # ZipFile.extract drops absolute paths and '..' components, so members stay inside dest.
            for member in members:
                archive.extract(member, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as err:
        raise GliomasegError(f"{path.name}: not a readable zip file ({err}); re-create the zip") from err
    return dest


def _stage(paths: Sequence[Path], work: Path, max_bytes: int, limits: Limits) -> Path:
    """The one input path to give :func:`discover_inputs`: the file, the unpacked zip, or a folder of the files."""
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    if zips:
        if len(paths) > 1:
            raise GliomasegError("upload a zip on its own (one zip of one patient folder), not with other files")
        return unzip_upload(zips[0], work / "scan", max_bytes, limits)
    if len(paths) == 1:
        return paths[0]
    names = [p.name for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GliomasegError(f"the upload holds two files named {twice[0]}; upload each slice once")
    folder = work / "scan"
    folder.mkdir(parents=True)
    for p in paths:
        shutil.copyfile(p, folder / p.name)
    return folder


def _found_truth(case: Case) -> np.ndarray | None:
    """Masks that sit beside every slice (``<stem>_mask.<ext>``, the kaggle_3m naming), else None."""
    if case.kind == "nifti":
        return None
    found = []
    for path in case.files:
        candidates = [path.with_name(f"{path.stem}_mask{s}") for s in IMAGE_SUFFIXES]
        match = next((c for c in candidates if c.is_file()), None)
        # A mask of another size than its slice is not this scan's truth; its header says so before decoding.
        if match is None or image_size(match) != image_size(path):
            return None
        found.append(read_mask(match).astype(bool))
    truth = np.stack(found)
    return truth if truth.shape == case.volume.shape[:3] else None  # type: ignore[union-attr]


def holds_dicom(folder: Path, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True when a file below ``folder`` is DICOM: named ``*.dcm`` or, without a suffix, carrying the
    ``DICM`` marker at byte 128 (PACS exports often have bare numbered names); at most as many files as an
    upload may hold (:func:`max_zip_members`) are looked at."""
    for path in sorted(folder.rglob("*"))[: max_zip_members(limits)] if folder.is_dir() else []:
        if not path.is_file():
            continue
        if path.suffix.lower() == ".dcm" or path.name == "DICOMDIR":
            return True
        if not path.suffix:
            with path.open("rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    return True
    return False


def _one_case(cases: list[Case], source: Path) -> Case:
    if not cases:
        if holds_dicom(source):
            raise GliomasegError(f"{source.name}: holds DICOM files, but no DICOM series could be read from them")
        raise GliomasegError(f"{source.name}: no slice image or NIfTI volume found; upload {SUPPORTED_INPUTS}")
    if len(cases) > 1:
        names = ", ".join(c.name for c in cases[:4]) + (", ..." if len(cases) > 4 else "")
        raise GliomasegError(
            f"the upload holds {len(cases)} separate scans ({names}); upload one at a time (the Scan box's × clears "
            "it). Several slices of one "
            "patient must be named <name>_<n>.<ext> (e.g. P1_1.tif, P1_2.tif), as in kaggle_3m"
        )
    return cases[0]


def load_upload(
    paths: Sequence[str | os.PathLike[str]], work: Path, *, max_bytes: int, limits: Limits = DEFAULT_LIMITS
) -> Scan:
    """Read an upload as one scan.

    Args:
        paths: the uploaded files (one slice, several slices, one zip or one NIfTI file).
        work: an empty private folder for unpacking and for the downloads (created).
        max_bytes: the upload size limit.
        limits: the decoded-size budget (pixels per slice, voxels, slices), checked from the headers
            before any pixel is decoded.

    Returns:
        The :class:`Scan`, with its volume read and any ground truth found beside the slices.

    Raises:
        GliomasegError: no file, too large (on disk or decoded), unsupported or corrupt files, or more
            than one scan.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from gliomaseg.data.io import write_image
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_image(tmp / "slice.png", np.zeros((64, 64), np.uint8))
        >>> load_upload([tmp / "slice.png"], tmp / "work", max_bytes=10**6).volume.shape
        (1, 64, 64, 3)
    """
    files = [Path(p) for p in paths]
    if not files:
        raise GliomasegError(f"no file uploaded; upload {SUPPORTED_INPUTS}")
    check_sizes(files, max_bytes)
    work.mkdir(parents=True, exist_ok=True)
    source = _stage(files, work, max_bytes, limits)
    case = _one_case(discover_inputs([source], work / "out"), source)
    check_case(case, limits)
    read_case(case)
    # Masks count as ground truth only when they came in the same upload (a zip, or several files).
    staged = source != files[0]
    return Scan(case=case, work=work, truth=_found_truth(case) if staged else None)
