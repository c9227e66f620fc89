"""Finding and reading the user's inputs: slices, folders of slices, kaggle_3m patient folders, NIfTI.

Inputs (any mix; each becomes one or more *cases*, one row of ``areas.csv`` each):

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
- **A NIfTI volume** ``.nii``/``.nii.gz`` (read with nibabel): ``X x Y x Z`` (slices along the last
  spatial axis, taken as FLAIR and copied into three channels) or ``X x Y x Z x C`` with ``C`` in
  {1, 3} (channel order pre-contrast, FLAIR, post-contrast); ``X x Y`` is one slice. Slice ``z`` is
  ``data[:, :, z]`` with rows along ``X`` and columns along ``Y``: array axes are used as stored,
  with no reorientation (the model was trained on axial slices; store axial slices on the last
  axis). Non-uint8 data are scaled to uint8 per volume and channel: the 0.5th-99.5th percentile
  range maps linearly to 0-255 (clipped); uint8 data are kept. NaN or infinite voxels and slices
  under 32 x 32 are refused (see :mod:`gliomaseg.inference.nifti`).
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

from gliomaseg.data.io import IMAGE_SUFFIXES, mask_suffix, read_image_any
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.nifti import nifti_stem, read_nifti
from gliomaseg.utils import non_regular_kind

__all__ = ["SUPPORTED_INPUTS", "Case", "discover_inputs", "read_case", "read_volume"]

SUPPORTED_INPUTS = (
    "a slice image (.tif, .tiff, .png, .jpg, .jpeg; grey or 3-channel uint8), a folder of slices "
    "(<name>_<n>.<ext>), a kaggle_3m patient folder, or a NIfTI volume (.nii, .nii.gz)"
)
log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"^(?P<name>.+)_(?P<n>\d+)$")


@dataclass
class Case:
    """One unit of prediction: a volume (or a single slice) and where its outputs go.

    Attributes:
        name: the case's name (file stem, ``<name>`` of ``<name>_<n>`` slices, or NIfTI stem).
        kind: ``slice``, ``volume``, ``patient`` or ``nifti``.
        source: the input file, or the folder holding the slices.
        files: slice files in order (one for ``slice``, the NIfTI file for ``nifti``).
        masks: mask target per slice (one NIfTI file for ``nifti``).
        overlays: overlay PNG target per slice.
    """

    name: str
    kind: str
    source: Path
    files: list[Path]
    masks: list[Path]
    overlays: list[Path]
    volume: np.ndarray | None = field(default=None, repr=False)
    nifti: Any = field(default=None, repr=False)

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


def _is_slice_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.lower().endswith("_mask")


def _folder_cases(folder: Path, out_dir: Path, skip: Path | None, visited: set[Path]) -> list[Case]:
    real = folder.resolve()
    if real in visited:
        # A link back to a folder already searched (a loop, or the same folder twice): search it once.
        log.warning("skipping %s: it leads to %s, which is searched already", folder, real)
        return []
    visited.add(real)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__")))
    for p in entries:
        if p.is_symlink() and not p.exists():
            log.warning("ignoring %s: a broken link or a link loop", p)
    files = [p for p in entries if p.is_file()]
    groups: dict[str, list[tuple[int, Path]]] = {}
    cases: list[Case] = []
    for path in files:
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
            cases.extend(_folder_cases(sub, out_dir / sub.name, skip, visited))
    return cases


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


def discover_inputs(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> list[Case]:
    """Expand the inputs into cases with their output paths (nothing is read yet).

    Args:
        inputs: slice files, folders and NIfTI files (see the module docstring).
        out: the output folder; outputs mirror input names below it (and it is never scanned as input).

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
            found = _folder_cases(path, out / _output_folder_name(path), skip, visited)
            if not found:
                raise _unsupported(path, "folder holds no slice images or NIfTI files")
            cases.extend(found)
        elif path.is_file():
            if nifti_stem(path) is not None:
                cases.append(_nifti_case(path, out))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                cases.append(_slice_case(path, out))
            else:
                raise _unsupported(path, f"unsupported file type {''.join(path.suffixes) or '(none)'!r}")
        elif non_regular_kind(path):
            raise _unsupported(path, f"it is {non_regular_kind(path)}, not a file or folder")
        else:
            raise GliomasegError(f"input {path} does not exist; pass {SUPPORTED_INPUTS}")
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
    # A grey image is FLAIR; copying it into every channel mirrors how kaggle_3m fills a missing
    # pre- or post-contrast sequence with FLAIR.
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def read_case(case: Case) -> np.ndarray:
    """Read a case's volume (and keep it on ``case.volume``).

    Returns:
        ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast).

    Raises:
        GliomasegError: an unreadable or truncated file, a wrong dtype or channel count, or slices of
            one volume with different sizes (the message names the file).
    """
    if case.kind == "nifti":
        volume, case.nifti = read_nifti(case.source)
        case.volume = np.ascontiguousarray(_as_three_channels(volume))
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


def read_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one volume: a kaggle_3m patient folder, a folder of ``<name>_<n>`` slices, a NIfTI file or a slice.

    The same reader ``predict``, ``evaluate`` and the web page use, so an array read here gives the
    same masks through :meth:`~gliomaseg.inference.segmenter.Segmenter.predict_volume`.

    Args:
        path: the folder or file (see the module docstring for the accepted kinds).

    Returns:
        ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast), slices in order.

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
    cases = discover_inputs([path], Path(os.devnull))
    if len(cases) != 1:
        names = ", ".join(c.name for c in cases[:4]) + (", ..." if len(cases) > 4 else "")
        raise GliomasegError(
            f"{path} holds {len(cases)} volumes ({names}); pass one patient folder, slice folder or NIfTI file"
        )
    return read_case(cases[0])
