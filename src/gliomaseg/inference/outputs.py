"""What ``predict`` writes for one case, and its row of ``cases.csv``.

Per case, beside each other below ``out`` (names mirror the input):

- the mask in the input's own geometry: ``<stem>_mask.<ext>`` per slice for slice images and
  folders (uint8 0/255; TIFF -> TIFF, PNG/JPEG -> PNG), ``<name>_mask.nii[.gz]`` for NIfTI and
  DICOM inputs (exactly the input's shape and affine; :func:`~gliomaseg.inference.writers.write_nifti_mask`);
- DICOM inputs also ``<name>_seg.dcm``, a DICOM SEG referencing the source instances;
- volumes: ``<name>_overview.png``, one montage of the slices with the most tumour (on by default);
- ``--overlays``: an overlay PNG per slice (default only for single slices, whose overlay is their
  overview): ``<stem>_overlay.png`` beside slice images, ``<name>_overlay/<name>_<z>.png`` for volumes;
- ``--save-probabilities``: ``<name>_proba.nii.gz``, float32 0..1 in the input's geometry.

The ``cases.csv`` row (:data:`CASES_COLUMNS`) is built by :func:`case_row` from the mask in the
input's geometry, so the figures are in the input's voxels and true voxel size; add a column by
extending :data:`CASES_COLUMNS` and the dict :func:`case_row` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.data.io import read_mask, write_image, write_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.inputs import Case
from gliomaseg.inference.measures import COMPONENT_COLUMNS, MEASURE_COLUMNS, components, summarise
from gliomaseg.inference.nifti import nifti_spacing_known
from gliomaseg.inference.orientation import from_model_frame
from gliomaseg.inference.overview import write_overview
from gliomaseg.inference.volume import Volume
from gliomaseg.inference.writers import write_dicom_seg, write_nifti_mask, write_probabilities

__all__ = [
    "CASES_COLUMNS",
    "CASE_COMPONENT_COLUMNS",
    "OutputOptions",
    "case_row",
    "case_targets",
    "case_volume",
    "finished_case",
    "overlay",
    "to_source",
    "write_case",
]

#: ``cases.csv``: one row per case. ``slices`` and ``slices_with_tumour`` count along the input's
#: own slice axis (the third); the file columns hold the written paths ('' when not written).
CASES_COLUMNS: tuple[str, ...] = (
    "input",
    "case",
    "kind",
    "slices",
    "slices_with_tumour",
    *MEASURE_COLUMNS,
    "mask",
    "seg",
    "overview",
    "probabilities",
    "overlays",
)
#: ``components.csv``: one row per 26-connected component of every case.
CASE_COMPONENT_COLUMNS: tuple[str, ...] = ("input", "case", *COMPONENT_COLUMNS)
_FILE_COLUMNS = ("mask", "seg", "overview", "probabilities", "overlays")
_RED = np.array([255, 0, 0], np.uint8)
#: Volumes written as one file (NIfTI, DICOM) rather than one image per slice.
_ONE_FILE = ("nifti", "dicom")


@dataclass(frozen=True)
class OutputOptions:
    """Which optional outputs ``predict`` writes.

    Attributes:
        overlays: an overlay PNG per slice; None: only for single-slice cases.
        overview: one overview montage per volume.
        probabilities: the probability map (``<name>_proba.nii.gz``).
        algorithm: ``(name, version)`` of the model, recorded in DICOM SEGs
            (:func:`gliomaseg.inference.segmenter.model_algorithm`); needed to write a SEG.
    """

    overlays: bool | None = None
    overview: bool = True
    probabilities: bool = False
    algorithm: tuple[str, str] | None = None

    def wants_overlays(self, case: Case) -> bool:
        """Per-slice overlays for this case."""
        return self.overlays if self.overlays is not None else case.kind == "slice"

    def wants_overview(self, case: Case) -> bool:
        """An overview montage for this case (a single slice's overlay is its overview)."""
        return self.overview and case.kind != "slice"


def overlay(flair: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FLAIR in grey with the mask's outline in red.

    Args:
        flair: ``H x W`` uint8.
        mask: ``H x W`` bool.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    rgb = np.repeat(flair[..., None], 3, axis=-1)
    edge = mask & ~ndimage.binary_erosion(mask)
    rgb[edge] = _RED
    return rgb


# ------------------------------------------------------------------------------------ geometry
def case_volume(case: Case) -> Volume:
    """The case as a :class:`Volume` in the input's own geometry (the case must be read).

    NIfTI and DICOM: the scan as its reader returned it (``case.image``: affine, voxel size, the
    NIfTI header or the source DICOM datasets); slice images: unit affine and no voxel size.
    """
    if case.kind in _ONE_FILE:
        if case.image is None:
            raise GliomasegError(f"{case.source}: the case has not been read; read it with read_case first")
        return case.image
    assert case.volume is not None
    array = np.moveaxis(case.volume, 0, 2)  # S x H x W x 3 -> X x Y x Z x 3, a view
    return Volume(array, np.eye(4), case.source, case.kind, spacing_known=False)


def to_source(case: Case, model_frame: np.ndarray, *, order: int = 0) -> np.ndarray:
    """An ``S x H x W`` result in the model's frame -> ``X x Y x Z`` in the input's geometry.

    NIfTI and DICOM go back through :func:`~gliomaseg.inference.orientation.from_model_frame` (``order``
    0 for masks, 1 for probabilities of a resliced volume); slice images are stored as the model saw them.
    """
    if case.frame is not None:
        return from_model_frame(model_frame, case.frame, order=order)
    return np.moveaxis(model_frame, 0, 2)


# ------------------------------------------------------------------------------------ targets and rows
def case_targets(case: Case, options: OutputOptions, n_slices: int | None = None) -> dict[str, list[Path]]:
    """Every file a case writes, by ``cases.csv`` column (``mask``, ``seg``, ``overview``, ...).

    Args:
        case: the case (its ``masks`` and, for slice images, ``overlays`` set by discovery).
        options: the optional outputs.
        n_slices: slices in the model's frame (for a NIfTI/DICOM volume's overlays); None: the read volume's.
    """
    base, name = case.masks[0].parent, case.name
    one_file = case.kind in _ONE_FILE
    targets: dict[str, list[Path]] = {"mask": list(case.masks), "seg": [], "overview": [], "probabilities": []}
    if case.kind == "dicom":
        targets["seg"] = [base / f"{name}_seg.dcm"]
    if options.wants_overview(case):
        targets["overview"] = [base / f"{name}_overview.png"]
    if options.probabilities:
        targets["probabilities"] = [base / f"{name}_proba.nii.gz"]
    overlays: list[Path] = []
    if options.wants_overlays(case):
        if one_file:
            n = n_slices if n_slices is not None else (case.volume.shape[0] if case.volume is not None else 0)
            overlays = [base / f"{name}_overlay" / f"{name}_{z:03d}.png" for z in range(n)]
        else:
            overlays = list(case.overlays)
    targets["overlays"] = overlays
    return targets


def _file_columns(case: Case, targets: dict[str, list[Path]]) -> dict[str, str]:
    def one(paths: list[Path]) -> str:
        return str(paths[0]) if paths else ""

    mask = one(targets["mask"]) if case.kind in (*_ONE_FILE, "slice") else str(targets["mask"][0].parent)
    overlays = targets["overlays"]
    shown = "" if not overlays else str(overlays[0] if case.kind == "slice" else overlays[0].parent)
    return {
        "mask": mask,
        "seg": one(targets["seg"]),
        "overview": one(targets["overview"]),
        "probabilities": one(targets["probabilities"]),
        "overlays": shown,
    }


def case_row(
    case: Case, mask: np.ndarray, voxel_ml: float | None, targets: dict[str, list[Path]] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A case's ``cases.csv`` row and its ``components.csv`` rows.

    ``predict`` writes them and the web page shows them, so both report the same figures.

    Args:
        case: the case.
        mask: ``X x Y x Z`` bool mask in the input's geometry.
        voxel_ml: one voxel's volume in mL (:attr:`Volume.voxel_ml`), or None when unknown.
        targets: :func:`case_targets` (the file columns; '' without).

    Returns:
        ``(row, component_rows)``: the row has every column of :data:`CASES_COLUMNS`.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[..., None]
    parts = components(mask, voxel_ml)
    per_slice = mask.any(axis=(0, 1))  # no reshape: the mask may be a transposed view of the model's frame
    row: dict[str, Any] = {
        "input": str(case.source),
        "case": case.name,
        "kind": case.kind,
        "slices": int(mask.shape[2]),
        "slices_with_tumour": int(per_slice.sum()),
        **summarise(parts, voxel_ml),
        **(_file_columns(case, targets) if targets else dict.fromkeys(_FILE_COLUMNS, "")),
    }
    return row, [{"input": str(case.source), "case": case.name, **part} for part in parts]


# ------------------------------------------------------------------------------------ writing, resuming
def write_case(
    case: Case,
    mask: np.ndarray,
    *,
    options: OutputOptions | None = None,
    probabilities: np.ndarray | None = None,
    overwrite: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write a case's outputs (see the module docstring) and return its rows.

    Args:
        case: the case, discovered and read (``case.volume`` set).
        mask: ``S x H x W`` bool mask in the model's frame.
        options: the optional outputs (default :class:`OutputOptions`).
        probabilities: ``S x H x W`` float32 in the model's frame; needed with ``options.probabilities``.
        overwrite: replace existing files.

    Returns:
        :func:`case_row`'s ``(row, component_rows)``.

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is False.
        GliomasegError: probabilities asked for but not given; a DICOM case without
            ``options.algorithm``.
    """
    options = options or OutputOptions()
    volume = case_volume(case)
    source_mask = to_source(case, mask)
    targets = case_targets(case, options, mask.shape[0])
    if targets["probabilities"] and probabilities is None:
        raise GliomasegError(f"{case.source}: probabilities were asked for but not computed")
    if targets["seg"] and options.algorithm is None:
        raise GliomasegError(
            f"{case.source}: a DICOM SEG records the model that made it; pass "
            "OutputOptions(algorithm=model_algorithm(segmenter))"
        )
    assert case.volume is not None
    if case.kind in _ONE_FILE:
        write_nifti_mask(targets["mask"][0], source_mask, volume, overwrite=overwrite)
    else:
        for z, path in enumerate(targets["mask"]):
            write_mask(path, mask[z], overwrite=overwrite)
    if targets["seg"]:
        write_dicom_seg(targets["seg"][0], source_mask, volume, algorithm=options.algorithm, overwrite=overwrite)
    if targets["probabilities"]:
        path = targets["probabilities"][0]
        write_probabilities(path, to_source(case, probabilities, order=1), volume, overwrite=overwrite)
    if targets["overview"]:
        write_overview(targets["overview"][0], case.volume, mask, overwrite=overwrite)
    for z, path in enumerate(targets["overlays"]):
        write_image(path, overlay(case.volume[z, ..., 1], mask[z]), overwrite=overwrite)
    return case_row(case, source_mask, volume.voxel_ml, targets)


def _read_nifti_mask(path: Path) -> tuple[np.ndarray, float | None]:
    """A written NIfTI mask (``X x Y x Z`` bool) and its voxel size in mL (None when pixdim is 0)."""
    import nibabel as nib

    image = nib.load(str(path))
    data = np.asarray(image.dataobj) > 0
    if data.ndim == 2:
        data = data[..., None]
    known = nifti_spacing_known(image)  # nibabel reads a stored pixdim of 0 as 1
    affine = np.asarray(image.affine, float)
    return data, (float(np.prod(np.linalg.norm(affine[:3, :3], axis=0))) / 1000.0 if known else None)


def finished_case(case: Case, options: OutputOptions) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The rows of a case whose outputs are all written, read back from its mask(s); else None.

    Outputs are written atomically, so a file that exists is complete.
    """
    if not all(p.exists() for p in case.masks):
        return None
    if case.kind in _ONE_FILE:
        source_mask, voxel_ml = _read_nifti_mask(case.masks[0])
    else:
        source_mask = to_source(case, np.stack([read_mask(p) for p in case.masks]) > 0)
        voxel_ml = None
    targets = case_targets(case, options, n_slices=source_mask.shape[2])
    if not all(p.exists() for paths in targets.values() for p in paths):
        return None
    return case_row(case, source_mask, voxel_ml, targets)
