"""Mask files to score: finding them, naming their cases, reading them, and putting a pair on one grid.

``gliomaseg score PRED TRUTH`` (:mod:`gliomaseg.evaluation.score`) takes a file or a folder on each
side; folders are searched recursively. Three kinds of mask are read:

- **NIfTI** ``.nii``/``.nii.gz`` (nibabel): a label map; every non-zero label is tumour (so a
  BraTS-style label map scores as whole tumour). Values must be non-negative integers with at most
  16 distinct labels: an intensity image given by mistake is refused, not scored. The affine and
  voxel size come from the header (pixdim <= 0: unknown, reported in voxels).
- **DICOM SEG** files (``.dcm``, or no suffix with the DICOM preamble) whose Modality is ``SEG``
  (highdicom ``segread`` and ``get_volume``; every segment is tumour; a FRACTIONAL SEG is tumour
  where >= 0.5). Other DICOM files in a folder (e.g. the source series) are skipped.
- **Slice masks** ``<name>_<n>_mask.<tif|tiff|png>``, as kaggle_3m and ``predict`` write them: the
  slices of one ``<name>`` are stacked by ``n`` into an ``H x W x S`` volume (slice ``z`` is
  ``[:, :, z]``, the NIfTI convention of ``predict``), without a voxel size. ``<stem>_mask.<ext>``
  without a number is a one-slice case. Images without ``_mask`` are ignored.

Case names (how PRED and TRUTH are matched)
-------------------------------------------
A case's name is its file name without the extension (``.nii.gz``, ``.nii``, ``.dcm``, ``.tif``...)
and without one trailing known suffix: ``_mask``, ``_seg``, ``_segmentation``, ``_label``,
``_labels``, ``_pred``, ``_prediction``, ``_gt`` or ``_truth`` (also after ``-`` or ``.``). So
``P1_mask.nii.gz``, ``P1_seg.nii.gz`` and ``P1.nii.gz`` (nnU-Net's identical names) are all case
``P1``; slice masks are case ``<name>``, which for kaggle_3m is the patient folder's name; a DICOM
SEG is named by its file name, never by the patient name or ID in its header. Two masks of the
same name on one side are refused (rename one or score the folders separately), except a NIfTI
mask and a DICOM SEG, which ``predict`` writes together for a DICOM input: the NIfTI is read.
Probability maps ``<name>_proba.nii[.gz]`` (``predict --save-probabilities``) are skipped.

Geometry
--------
Two masks are scored on one voxel grid. When both have an affine, the prediction is moved onto the
reference's grid if the two differ only by the order or direction of the axes and a whole-voxel
shift (a DICOM SEG that leaves out empty frames, a NIfTI stored in another axis order): exact, no
interpolation. Anything else (another voxel size, a rotation, a half-voxel shift beyond 1e-3 voxel)
is refused naming the pair. A mask without an affine (slice masks) must have exactly the other's
shape.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliomaseg.data.io import read_mask
from gliomaseg.errors import GliomasegError

__all__ = ["GRID_TOL", "Mask", "MaskFile", "align_pair", "case_name", "find_masks", "match_cases", "read_mask_file"]

log = logging.getLogger(__name__)

_SUFFIX = re.compile(r"[_.-](mask|seg|segmentation|labels?|pred|prediction|gt|truth)$", re.IGNORECASE)
_SLICE_MASK = re.compile(r"^(?P<name>.+)_(?P<n>\d+)_mask$", re.IGNORECASE)
_SLICE_SUFFIXES = (".tif", ".tiff", ".png")
_MAX_LABELS = 16
#: ``predict --save-probabilities`` writes ``<name>_proba.nii.gz`` beside the mask.
_PROBABILITIES = "_proba"
#: Tolerance, in voxels, for two affines to describe the same grid.
GRID_TOL = 1e-3
# NIfTI (and nibabel) is RAS+, DICOM is LPS: the first two world axes change sign.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class MaskFile:
    """One case's mask on disk: ``name`` (its case name), ``kind`` (``nifti``, ``dicom-seg``, ``slices``)
    and ``files`` (one file, or the slice files in order)."""

    name: str
    kind: str
    files: tuple[Path, ...]

    @property
    def source(self) -> Path:
        """The file, or the folder of the slice files."""
        return self.files[0] if self.kind != "slices" else self.files[0].parent


@dataclass(frozen=True)
class Mask:
    """A mask read: ``array`` (bool, ``X x Y x Z``), ``affine`` (``4 x 4`` voxel -> RAS mm, or None when
    the file gives no geometry) and ``source``."""

    array: np.ndarray
    affine: np.ndarray | None
    source: Path

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """Voxel size in mm along the array's axes, or None when unknown."""
        if self.affine is None:
            return None
        return tuple(float(n) for n in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def case_name(stem: str) -> str:
    """A file stem (without extension) minus one trailing known suffix (``_mask``, ``_seg``...)."""
    return _SUFFIX.sub("", stem) or stem


def _nifti_stem(path: Path) -> str | None:
    for suffix in (".nii.gz", ".nii"):
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _is_dicom_seg(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception as err:  # pydicom raises many types for a file that is not DICOM
        raise GliomasegError(f"{path}: not a readable DICOM file ({err}); remove it or pass another file") from None
    return str(getattr(ds, "Modality", "")) == "SEG"


def _has_dicom_preamble(path: Path) -> bool:
    """Whether a file without a suffix is DICOM (``DICM`` after the 128-byte preamble), as PACS exports often are."""
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _file_mask(path: Path, given: bool) -> MaskFile | None:
    """The :class:`MaskFile` of one NIfTI or DICOM SEG file, or None for a file that is not a mask."""
    stem = _nifti_stem(path)
    if stem is not None:
        if stem.endswith(_PROBABILITIES):
            log.debug("skipping %s: a probability map, not a mask", path)
            return None
        return MaskFile(case_name(stem), "nifti", (path,))
    if path.suffix.lower() == ".dcm" or (not path.suffix and _has_dicom_preamble(path)):
        if _is_dicom_seg(path):
            return MaskFile(case_name(path.stem), "dicom-seg", (path,))
        if given:
            raise GliomasegError(f"{path} is a DICOM image, not a DICOM SEG; pass the segmentation object")
        log.debug("skipping %s: DICOM but not a SEG", path)
    return None


def _slice_masks(files: list[Path]) -> list[MaskFile]:
    groups: dict[str, list[tuple[int, Path]]] = {}
    single = []
    for path in files:
        if path.suffix.lower() not in _SLICE_SUFFIXES or not path.stem.lower().endswith("_mask"):
            continue
        m = _SLICE_MASK.match(path.stem)
        if m:
            groups.setdefault(m["name"], []).append((int(m["n"]), path))
        else:
            single.append(MaskFile(path.stem[: -len("_mask")], "slices", (path,)))
    return single + [MaskFile(name, "slices", tuple(p for _, p in sorted(g))) for name, g in groups.items()]


def find_masks(path: str | os.PathLike[str]) -> dict[str, MaskFile]:
    """The masks of a file or folder (searched recursively), by case name (see the module docstring).

    Raises:
        GliomasegError: a missing path, a file that is not a mask, a folder without masks, or two
            masks with the same case name.
    """
    root = Path(path)
    if root.is_file():
        found = _slice_masks([root]) if root.suffix.lower() in _SLICE_SUFFIXES else [_file_mask(root, True)]
        if not found or found[0] is None:
            raise GliomasegError(
                f"{root} is not a mask: pass NIfTI (.nii/.nii.gz), DICOM SEG (.dcm) or <name>_mask.tif/.png files "
                "or folders of them"
            )
        masks: list[MaskFile] = found  # type: ignore[assignment]
    elif root.is_dir():
        masks = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files = [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
            masks += [m for f in files if (m := _file_mask(f, False)) is not None]
            masks += _slice_masks(files)
        if not masks:
            raise GliomasegError(
                f"{root} holds no masks: expected NIfTI (.nii/.nii.gz), DICOM SEG (.dcm) or <name>_<n>_mask.tif "
                "slice masks (kaggle_3m layout)"
            )
    else:
        raise GliomasegError(f"{root} does not exist; pass a mask file or a folder of masks")
    by_name: dict[str, MaskFile] = {}
    for mask in masks:
        kinds = {mask.kind, by_name[mask.name].kind} if mask.name in by_name else set()
        if kinds == {"nifti", "dicom-seg"}:
            # predict writes a DICOM input's mask twice, <name>_mask.nii.gz and <name>_seg.dcm: the same
            # voxels; the NIfTI is read (it is faster to read and already in the input's geometry).
            by_name[mask.name] = mask if mask.kind == "nifti" else by_name[mask.name]
            continue
        if mask.name in by_name:
            raise GliomasegError(
                f"{by_name[mask.name].source} and {mask.source} both name case {mask.name!r}; rename one or score "
                "the folders separately"
            )
        by_name[mask.name] = mask
    return by_name


def match_cases(
    pred: dict[str, MaskFile], truth: dict[str, MaskFile]
) -> tuple[list[tuple[str, MaskFile, MaskFile]], list[str], list[str]]:
    """Pair the masks by case name.

    Returns:
        ``(pairs, unmatched_pred, unmatched_truth)``: ``(name, pred, truth)`` sorted by name, and the
        names found on one side only (sorted).
    """
    pairs = [(name, pred[name], truth[name]) for name in sorted(pred.keys() & truth.keys())]
    return pairs, sorted(pred.keys() - truth.keys()), sorted(truth.keys() - pred.keys())


def _label_map(data: np.ndarray, path: Path) -> np.ndarray:
    """Non-zero labels -> True, after refusing data that do not look like a label map."""
    if data.dtype == np.bool_:
        return data
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all() or not np.array_equal(data, np.round(data)):
            raise GliomasegError(
                f"{path}: holds non-integer values (a probability map or an image?); pass a mask, e.g. thresholded"
            )
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo < 0:
        raise GliomasegError(f"{path}: holds negative values ({lo}); a mask holds labels 0, 1, ...")
    n_labels = np.count_nonzero(np.bincount(data.ravel().astype(np.int64))) if hi < 65536 else _MAX_LABELS + 1
    if n_labels > _MAX_LABELS:
        raise GliomasegError(
            f"{path}: {n_labels} distinct values, which looks like an image, not a mask; pass the segmentation"
        )
    return data != 0


def _read_nifti(path: Path) -> Mask:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as err:  # nibabel, gzip and numpy raise many types for a damaged file
        raise GliomasegError(f"{path}: unreadable NIfTI ({err}); check the file") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise GliomasegError(f"{path}: a {data.ndim}D image of shape {data.shape}; a mask is one 3D volume")
    zooms = image.header.get_zooms()[:3]
    affine = np.asarray(image.affine, dtype=float) if all(z > 0 for z in zooms) else None
    return Mask(_label_map(data, path), affine, path)


def _read_dicom_seg(path: Path) -> Mask:
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
        volume = seg.get_volume(combine_segments=True, skip_overlap_checks=True)
    except Exception as err:  # highdicom raises ValueError/RuntimeError/AttributeError for what it cannot use
        raise GliomasegError(f"{path}: cannot read it as a DICOM SEG volume ({err})") from None
    array = np.asarray(volume.array)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    # A FRACTIONAL SEG reads as probabilities or occupancies in [0, 1]: tumour where at least half.
    tumour = array >= 0.5 if np.issubdtype(array.dtype, np.floating) else array != 0
    return Mask(tumour, _LPS_TO_RAS @ np.asarray(volume.affine, dtype=float), path)


def read_mask_file(mask: MaskFile) -> Mask:
    """Read one case's mask (see the module docstring for the kinds).

    Raises:
        GliomasegError: an unreadable file, or data that are not a binary or label mask.
    """
    if mask.kind == "nifti":
        return _read_nifti(mask.files[0])
    if mask.kind == "dicom-seg":
        return _read_dicom_seg(mask.files[0])
    slices = [read_mask(p) for p in mask.files]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise GliomasegError(f"{mask.source}: slice masks of {mask.name!r} differ in size {sorted(shapes)}")
    return Mask(np.stack(slices, axis=-1).astype(bool), None, mask.source)


def _onto_grid(moving: Mask, ref: Mask) -> np.ndarray | str:
    """``moving``'s array on ``ref``'s grid, or why that is impossible (both have affines)."""
    m = np.linalg.solve(ref.affine, moving.affine)  # moving index -> reference index
    rot, shift = m[:3, :3], m[:3, 3]
    perm = np.rint(rot)
    signed_permutation = (np.abs(perm).sum(0) == 1).all() and (np.abs(perm).sum(1) == 1).all()
    if not (signed_permutation and np.allclose(rot, perm, atol=GRID_TOL)):
        return "their voxel sizes or axis directions differ"
    if not np.allclose(shift, np.rint(shift), atol=GRID_TOL):
        return f"they are shifted by {np.round(shift - np.rint(shift), 3).tolist()} voxel"
    axes = [int(np.flatnonzero(perm[a])[0]) for a in range(3)]
    array = np.transpose(moving.array, axes)
    offset = np.rint(shift).astype(int)
    for a in range(3):
        if perm[a, axes[a]] < 0:
            array = np.flip(array, a)
            offset[a] -= array.shape[a] - 1
    end = offset + np.array(array.shape)
    if (offset < 0).any() or (end > np.array(ref.array.shape)).any():
        return "the prediction reaches outside the reference's field of view"
    out = np.zeros(ref.array.shape, dtype=bool)
    out[tuple(slice(lo, hi) for lo, hi in zip(offset, end))] = array
    return out


def align_pair(name: str, pred: Mask, truth: Mask) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Put a prediction on its reference's grid.

    Returns:
        ``(pred_array, truth_array, affine, affine_from)``: both ``X x Y x Z`` bool on the reference's
        grid; the affine that gives its voxel size (None when neither mask has one) and which side it
        came from (``both``, ``truth``, ``pred`` or ``none``).

    Raises:
        GliomasegError: the two are not on one grid (see the module docstring), naming both files.
    """
    if pred.affine is not None and truth.affine is not None:
        moved = _onto_grid(pred, truth)
        if isinstance(moved, str):
            raise GliomasegError(
                f"case {name!r}: {pred.source} and {truth.source} are not on the same voxel grid ({moved}); "
                "resample the prediction onto the reference's grid first"
            )
        return moved, truth.array, truth.affine, "both"
    if pred.array.shape != truth.array.shape:
        raise GliomasegError(
            f"case {name!r}: {pred.source} has shape {pred.array.shape} but {truth.source} has {truth.array.shape}; "
            "masks of one case must cover the same voxels"
        )
    if truth.affine is not None:
        return pred.array, truth.array, truth.affine, "truth"
    if pred.affine is not None:
        return pred.array, truth.array, pred.affine, "pred"
    return pred.array, truth.array, None, "none"
