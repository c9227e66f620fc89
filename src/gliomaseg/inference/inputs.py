"""Finding and reading the user's inputs: slices, folders of slices, kaggle_3m patient folders, NIfTI, DICOM.

Inputs (any mix; each becomes one or more *cases*, one row of ``cases.csv`` each):

- **A slice image** ``.tif``/``.tiff``/``.png``/``.jpg``/``.jpeg``, ``H x W`` (grey) or ``H x W x 3``
  uint8 (pre-contrast, FLAIR, post-contrast, as in kaggle_3m). A one-channel image is taken as
  FLAIR and copied into all three channels, which is how the dataset itself fills missing
  sequences. One slice is a volume of one: the per-volume normalisation statistics then come
  from that slice alone (kind ``slice``).
- **A folder of slices**: files named ``<name>_<n>.<ext>`` form one volume per ``<name>``, ordered
  by the number ``n`` (kind ``volume``; a kaggle_3m patient folder, whose files are named after
  the folder, is kind ``patient``). Files named ``*_mask.*`` are ignored, other images (not
  ``<name>_<n>``) are separate one-slice cases, other file types are ignored, and sub-folders
  are searched too (so the whole ``kaggle_3m`` folder works). NIfTI files in a folder are cases too.
- **A NIfTI volume** ``.nii``/``.nii.gz`` (read with nibabel), in any orientation: ``X x Y x Z`` (FLAIR,
  copied into three channels) or ``X x Y x Z x C`` with ``C`` in {1, 3} (pre-contrast, FLAIR,
  post-contrast); ``X x Y`` is one slice. It is turned by its affine to the model's orientation (and
  resliced to axial when tilted; see :mod:`gliomaseg.inference.orientation`); a header without
  orientation is read as stored (slices along the last axis, rows along ``X``). Non-uint8 data are
  scaled to uint8 per volume and channel: the 0.5th-99.5th percentile range maps linearly to 0-255
  (clipped); uint8 data are kept. NaN or infinite voxels and slices under 32 x 32 (in the model's
  orientation) are refused (see :mod:`gliomaseg.inference.nifti`).
- **Several sequences of one case**: NIfTI files ``<case>_flair``, ``_t1``, ``_t1ce`` (or nnU-Net's
  ``<case>_0000`` ...) in one folder, or given together, are one case (see
  :mod:`gliomaseg.inference.sequences`).
- **DICOM**: a folder whose files (sub-folders included) are DICOM images of one study, or one DICOM
  file: its FLAIR series (or ``series``) is read (see :mod:`gliomaseg.inference.dicom`). A folder of
  several studies is searched for them sub-folder by sub-folder.

NIfTI and DICOM cases go to the model's frame; their masks come back in the input's own voxel grid.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gliomaseg.data.io import IMAGE_SUFFIXES, KAGGLE_3M_ORIENTATION, mask_suffix, read_image_any
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.dicom import is_dicom, one_study, read_dicom
from gliomaseg.inference.nifti import nifti_stem, nifti_to_uint8, read_nifti_volume
from gliomaseg.inference.orientation import Frame, to_model_frame
from gliomaseg.inference.sequences import group_sequences, read_sequences
from gliomaseg.inference.volume import Volume
from gliomaseg.utils import non_regular_kind

__all__ = ["SUPPORTED_INPUTS", "WINDOWED_KINDS", "Case", "discover_inputs", "read_case", "read_image", "read_volume"]

SUPPORTED_INPUTS = (
    "a slice image (.tif, .tiff, .png, .jpg, .jpeg; grey or 3-channel uint8), a folder of slices "
    "(<name>_<n>.<ext>), a kaggle_3m patient folder, a NIfTI volume (.nii, .nii.gz; <case>_flair/_t1/_t1ce "
    "files of one case), or a DICOM series or study folder"
)
#: Case kinds of unknown framing: ``predict`` and the web page show them to the network through the
#: field-of-view window (:mod:`gliomaseg.inference.field_of_view`); kaggle_3m slices are framed as in training.
WINDOWED_KINDS = ("nifti", "dicom")
log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"^(?P<name>.+)_(?P<n>\d+)$")


@dataclass
class Case:
    """One unit of prediction: a volume (or a single slice) and where its outputs go.

    Attributes:
        name: the case's name (file stem, ``<name>`` of ``<name>_<n>`` slices, NIfTI stem, ``<case>`` of
            sequence files, or the DICOM folder's name).
        kind: ``slice``, ``volume``, ``patient``, ``nifti`` or ``dicom``.
        source: the input file (FLAIR's for sequence files), or the folder holding the slices or DICOM files.
        files: slice files in order (one for ``slice``, the NIfTI file(s) for ``nifti``, the folder for ``dicom``).
        masks: mask target per slice (one NIfTI file for ``nifti`` and ``dicom``).
        overlays: overlay PNG target per slice.
        series: the DICOM series to read (None: FLAIR by name; see :func:`~gliomaseg.inference.dicom.read_dicom`).
        sequences: ``{role: file}`` of a case given as sequence files, else None.
        image: the scan as read (``nifti``/``dicom``), with its geometry.
        frame: how it was brought to the model's frame (for the mask's way back).
    """

    name: str
    kind: str
    source: Path
    files: list[Path]
    masks: list[Path]
    overlays: list[Path]
    volume: np.ndarray | None = field(default=None, repr=False)
    nifti: Any = field(default=None, repr=False)
    series: str | None = None
    sequences: dict[str, Path] | None = None
    image: Volume | None = field(default=None, repr=False)
    frame: Frame | None = field(default=None, repr=False)

    @property
    def targets(self) -> list[Path]:
        """Every file this case writes."""
        return [*self.masks, *self.overlays]


def _unsupported(path: Path, why: str) -> GliomasegError:
    return GliomasegError(f"{path}: {why}; supported inputs are {SUPPORTED_INPUTS}")


def _slice_case(path: Path, out_dir: Path) -> Case:
    return Case(
        name=path.stem,
        kind="slice",
        source=path,
        files=[path],
        masks=[out_dir / f"{path.stem}_mask{mask_suffix(path.suffix)}"],
        overlays=[out_dir / f"{path.stem}_overlay.png"],
    )


def _nifti_case(path: Path, out_dir: Path) -> Case:
    stem = nifti_stem(path) or path.stem
    suffix = path.name[len(stem) :]
    return Case(
        name=stem,
        kind="nifti",
        source=path,
        files=[path],
        masks=[out_dir / f"{stem}_mask{suffix}"],
        overlays=[],
    )


def _sequence_cases(paths: list[Path], out_dir: Path) -> tuple[list[Case], set[Path]]:
    """Cases of NIfTI files named by sequence (``<case>_flair`` ...) and the files they take."""
    cases, taken = [], set()
    for name, roles in group_sequences(paths).items():
        flair = roles["flair"]
        suffix = flair.name[len(nifti_stem(flair) or "") :]
        files = [roles[r] for r in ("pre", "flair", "post", "t2") if r in roles]
        cases.append(Case(name, "nifti", flair, files, [out_dir / f"{name}_mask{suffix}"], [], sequences=roles))
        taken.update(files)
    return cases, taken


def _dicom_case(source: Path, out_dir: Path, name: str, series: str | None) -> Case:
    return Case(name, "dicom", source, [source], [out_dir / f"{name}_mask.nii.gz"], [], series=series)


def _is_slice_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.lower().endswith("_mask")


def _folder_cases(
    folder: Path, out_dir: Path, skip: Path | None, visited: set[Path], series: str | None = None
) -> list[Case]:
    real = folder.resolve()
    if real in visited:
        # A link back to a folder already searched (a loop, or the same folder twice): search it once.
        log.warning("skipping %s: it leads to %s, which is searched already", folder, real)
        return []
    visited.add(real)
    if one_study(folder, skip):
        return [_dicom_case(folder, out_dir.parent, _output_folder_name(folder), series)]
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__")))
    for p in entries:
        if p.is_symlink() and not p.exists():
            log.warning("ignoring %s: a broken link or a link loop", p)
    files = [p for p in entries if p.is_file()]
    groups: dict[str, list[tuple[int, Path]]] = {}
    cases, taken = _sequence_cases([p for p in files if nifti_stem(p) is not None], out_dir)
    for path in files:
        if path in taken:
            continue
        if nifti_stem(path) is not None:
            cases.append(_nifti_case(path, out_dir))
        elif _is_slice_image(path):
            m = _NUMBERED.match(path.stem)
            if m:
                groups.setdefault(m["name"], []).append((int(m["n"]), path))
            else:
                cases.append(_slice_case(path, out_dir))
    for name, numbered in groups.items():
        numbered.sort()
        numbers = [n for n, _ in numbered]
        if len(set(numbers)) != len(numbers):
            dup = sorted({n for n in numbers if numbers.count(n) > 1})
            raise GliomasegError(
                f"{folder}: slices of {name!r} share numbers {dup} (e.g. the same slice as .tif and .png); "
                "keep one file per slice"
            )
        paths = [p for _, p in numbered]
        cases.append(
            Case(
                name=name,
                kind="patient" if name == folder.name else "volume",
                source=folder,
                files=paths,
                masks=[out_dir / f"{p.stem}_mask{mask_suffix(p.suffix)}" for p in paths],
                overlays=[out_dir / f"{p.stem}_overlay.png" for p in paths],
            )
        )
    for sub in entries:
        if sub.is_dir() and (skip is None or sub.resolve() != skip):
            cases.extend(_folder_cases(sub, out_dir / sub.name, skip, visited, series))
    return cases


def _merge_given_sequences(cases: list[Case], out: Path) -> list[Case]:
    """Sequence files given one by one (``a_flair.nii.gz a_t1.nii.gz``) become one case, like in a folder."""
    loose = [c.source for c in cases if c.kind == "nifti" and c.sequences is None and c.masks[0].parent == out]
    merged, taken = [], set()
    for parent in dict.fromkeys(p.parent for p in loose):  # a case's files sit in one folder
        found, used = _sequence_cases([p for p in loose if p.parent == parent], out)
        merged += found
        taken |= used
    if not merged:
        return cases
    first = {case.source: case for case in merged}
    result = []
    for case in cases:
        if case.kind == "nifti" and case.sequences is None and case.source in taken:
            if case.source in first:
                result.append(first[case.source])
            continue
        result.append(case)
    return result


def _output_folder_name(folder: Path) -> str:
    """The name a folder input's outputs go under: its own name, never ``..``/``.``/empty (which would
    put outputs beside or above ``out``)."""
    name = folder.name if folder.name not in ("", ".", "..") else folder.resolve().name
    return name or "root"


def _check_inside(cases: list[Case], out: Path) -> None:
    root = out.resolve()
    for case in cases:
        for target in case.targets:
            if not target.resolve().is_relative_to(root):
                raise GliomasegError(
                    f"input {case.source} would write {target}, outside the output folder {out} (a link in it "
                    "leads elsewhere); remove the link or choose another --out"
                )


def discover_inputs(
    inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, series: str | None = None
) -> list[Case]:
    """Expand the inputs into cases with their output paths (nothing is read yet but one DICOM header per folder).

    Args:
        inputs: slice files, folders, NIfTI files and DICOM folders or files (see the module docstring).
        out: the output folder; outputs mirror input names below it (and it is never scanned as input).
        series: the DICOM series to read in every DICOM case (None: FLAIR, picked by name).

    Returns:
        The cases in input order (folders: NIfTI files and loose slices, then ``<name>_<n>``
        volumes in name order, then sub-folders).

    Raises:
        GliomasegError: a missing input, an unsupported file type, a folder without any slice or
            NIfTI file, or two inputs that would write the same output file.
    """
    out = Path(out)
    skip = out.resolve()
    cases: list[Case] = []
    visited: set[Path] = set()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise GliomasegError(f"no inputs given; pass {SUPPORTED_INPUTS}")
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            if path.resolve() in visited:
                log.warning("skipping %s: it is searched already (given twice, or inside another input)", path)
                continue
            found = _folder_cases(path, out / _output_folder_name(path), skip, visited, series)
            if not found:
                raise _unsupported(path, "folder holds no slice images, NIfTI or DICOM files")
            cases.extend(found)
        elif path.is_file():
            if nifti_stem(path) is not None:
                cases.append(_nifti_case(path, out))
            elif is_dicom(path):
                cases.append(_dicom_case(path, out, path.stem, series))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                cases.append(_slice_case(path, out))
            else:
                raise _unsupported(path, f"unsupported file type {''.join(path.suffixes) or '(none)'!r}")
        elif non_regular_kind(path):
            raise _unsupported(path, f"it is {non_regular_kind(path)}, not a file or folder")
        else:
            raise GliomasegError(f"input {path} does not exist; pass {SUPPORTED_INPUTS}")
    cases = _merge_given_sequences(cases, out)
    seen: dict[Path, Path] = {}
    for case in cases:
        for target in case.targets:
            key = target.resolve()
            if key in seen and seen[key] != case.source:
                raise GliomasegError(
                    f"inputs {seen[key]} and {case.source} would both write {target}; "
                    "rename one or predict them into different --out folders"
                )
            seen[key] = case.source
    _check_inside(cases, out)
    return cases


def _as_three_channels(image: np.ndarray) -> np.ndarray:
    # A grey image is FLAIR; FLAIR in every channel mirrors how kaggle_3m fills a missing pre- or
    # post-contrast sequence. A read-only broadcast, not three copies: the normaliser then works on
    # the one channel (gliomaseg.data.normalise.shared_channel), a third of its work.
    return np.broadcast_to(image, (*image.shape[:-1], 3)) if image.shape[-1] == 1 else image


def read_image(case: Case) -> Volume:
    """The scan of a NIfTI or DICOM case with its geometry (read once, kept on ``case.image``)."""
    if case.image is None:
        if case.kind == "dicom":
            case.image = read_dicom(case.source, case.series)
        elif case.sequences is not None:
            case.image = read_sequences(case.sequences)
        else:
            case.image = read_nifti_volume(case.source)
        case.nifti = case.image.extra.get("image")
    return case.image


def read_case(case: Case, orientation: Sequence[str] = KAGGLE_3M_ORIENTATION) -> np.ndarray:
    """Read a case's volume, in the model's frame (and keep it on ``case.volume``).

    Args:
        case: from :func:`discover_inputs`.
        orientation: the model's (row, column, slice) axis codes, for NIfTI and DICOM (the model
            file's; see :func:`~gliomaseg.inference.orientation.model_orientation`).

    Returns:
        ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast); for a FLAIR-only NIfTI or DICOM
        case a read-only broadcast of the one channel (copy it to write into it).

    Raises:
        GliomasegError: an unreadable or truncated file, a wrong dtype or channel count, or slices of
            one volume with different sizes (the message names the file).
    """
    if case.kind in WINDOWED_KINDS:
        array, case.frame = to_model_frame(read_image(case), orientation)
        case.volume = _as_three_channels(np.ascontiguousarray(nifti_to_uint8(array)))
        return case.volume
    slices = []
    for path in case.files:
        image = _as_three_channels(read_image_any(path))
        if slices and image.shape != slices[0].shape:
            raise GliomasegError(
                f"{path}: size {image.shape[0]} x {image.shape[1]} differs from {case.files[0]} "
                f"({slices[0].shape[0]} x {slices[0].shape[1]}); slices of one volume must match"
            )
        slices.append(image)
    case.volume = np.stack(slices)
    return case.volume


def read_volume(path: str | os.PathLike[str], series: str | None = None) -> np.ndarray:
    """Read one volume: a kaggle_3m patient folder, a folder of ``<name>_<n>`` slices, a NIfTI file, a DICOM
    folder or a slice; NIfTI and DICOM in the kaggle_3m models' frame.

    The same reader ``predict``, ``evaluate`` and the web page use, so an array read here gives the
    same masks through :meth:`~gliomaseg.inference.segmenter.Segmenter.predict_volume` (for NIfTI and
    DICOM, ``predict`` uses the segmenter's field-of-view window:
    :meth:`~gliomaseg.inference.segmenter.Segmenter.with_field_of_view`).

    Args:
        path: the folder or file (see the module docstring for the accepted kinds).
        series: the DICOM series (None: FLAIR, picked by name).

    Returns:
        ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast), slices in order; for a FLAIR-only
        NIfTI or DICOM a read-only broadcast of the one channel (``.copy()`` it to write into it).

    Raises:
        GliomasegError: a missing, unsupported or corrupt input (naming the file), or a folder that
            holds more than one volume.

    Example:
        >>> from gliomaseg.data.phantoms import synthesise_dataset
        >>> import tempfile, pathlib
        >>> root = synthesise_dataset(tempfile.mkdtemp(), 1, size=64)
        >>> patient = next(p for p in pathlib.Path(root).iterdir() if p.is_dir())
        >>> read_volume(patient).shape[1:]
        (64, 64, 3)
    """
    cases = discover_inputs([path], Path(os.devnull), series=series)
    if len(cases) != 1:
        names = ", ".join(c.name for c in cases[:4]) + (", ..." if len(cases) > 4 else "")
        raise GliomasegError(
            f"{path} holds {len(cases)} volumes ({names}); pass one patient folder, slice folder or NIfTI file"
        )
    return read_case(cases[0])
