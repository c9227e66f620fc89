"""Tumour volume from the true voxel size: per case and per connected component.

Measured on the mask in the input's own geometry (the voxels the user's scan has), with the
voxel size of its header (NIfTI pixdim / DICOM spacing, via :attr:`Volume.voxel_ml`). Components
are 3D with 26-connectivity (voxels touching by a corner belong together), the convention of
lesion counting in volumetric MRI. Without a real voxel size (slice images, kaggle_3m TIFFs) the
figures are voxel counts and ``volume_unit`` says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.evaluation.boxes import bounding_box

__all__ = ["COMPONENT_COLUMNS", "MEASURE_COLUMNS", "components", "measure", "summarise"]

#: The per-case figures :func:`measure` returns, in ``cases.csv`` order.
MEASURE_COLUMNS: tuple[str, ...] = (
    "tumour_voxels",
    "volume_unit",
    "voxel_ml",
    "tumour_ml",
    "components",
    "largest_component_voxels",
    "largest_component_ml",
)
#: The columns of ``components.csv`` (one row per component; ``case`` and ``input`` are added by ``predict``).
COMPONENT_COLUMNS: tuple[str, ...] = (
    "component",
    "voxels",
    "ml",
    "centroid_i",
    "centroid_j",
    "centroid_k",
)
_CONNECTIVITY_26 = np.ones((3, 3, 3), bool)


def _crop(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """The mask cut to its bounding box, and the box's corner: labelling a whole head for a small
    tumour costs most of the time of a 155-slice ``predict`` otherwise."""
    box = bounding_box(mask)
    if box is None:
        return mask[:0, :0, :0], (0,) * mask.ndim
    return mask[box], tuple(b.start for b in box)


def _labels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Labels (26-connected) of the mask's bounding box, the voxel count per label, and the box's corner."""
    box, corner = _crop(mask)
    labels, n = ndimage.label(box, structure=_CONNECTIVITY_26)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] if n else np.zeros(0, np.int64)
    return labels, sizes, corner


def _ml(voxels: int, voxel_ml: float | None) -> float:
    return voxels * voxel_ml if voxel_ml is not None else math.nan


def measure(mask: np.ndarray, voxel_ml: float | None) -> dict[str, Any]:
    """A case's tumour volume and components (a summary of :func:`components`).

    Args:
        mask: ``X x Y x Z`` bool mask in the input's geometry (2D masks are one slice).
        voxel_ml: one voxel's volume in mL, or None when the source gave no real voxel size.

    Returns:
        The :data:`MEASURE_COLUMNS`: ``tumour_voxels``, ``volume_unit`` (``mL``, or ``voxels`` when
        no size is known: the ``*_ml`` values are then NaN), ``voxel_ml``, ``tumour_ml``,
        ``components`` (26-connected), ``largest_component_voxels`` and ``largest_component_ml``.

    Example:
        >>> m = np.zeros((10, 10, 10), bool); m[:2, :2, :2] = m[5:, 5:, 5:] = True
        >>> r = measure(m, 0.001); r["components"], r["largest_component_voxels"], round(r["tumour_ml"], 3)
        (2, 125, 0.133)
    """
    return summarise(components(mask, voxel_ml), voxel_ml)


def summarise(rows: list[dict[str, Any]], voxel_ml: float | None) -> dict[str, Any]:
    """The :data:`MEASURE_COLUMNS` of a case from its :func:`components` rows."""
    total = sum(int(r["voxels"]) for r in rows)
    largest = max((int(r["voxels"]) for r in rows), default=0)
    return {
        "tumour_voxels": total,
        "volume_unit": "mL" if voxel_ml is not None else "voxels",
        "voxel_ml": voxel_ml if voxel_ml is not None else math.nan,
        "tumour_ml": _ml(total, voxel_ml),
        "components": len(rows),
        "largest_component_voxels": largest,
        "largest_component_ml": _ml(largest, voxel_ml),
    }


def components(mask: np.ndarray, voxel_ml: float | None) -> list[dict[str, Any]]:
    """One row per 26-connected component, largest first.

    Args:
        mask: ``X x Y x Z`` bool mask in the input's geometry.
        voxel_ml: one voxel's volume in mL, or None (``ml`` is then NaN).

    Returns:
        Rows with the :data:`COMPONENT_COLUMNS`: ``component`` (1 = largest), ``voxels``, ``ml`` and the
        centroid in voxel indices of the input (``centroid_i/j/k``).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[..., None]
    labels, sizes, corner = _labels(mask)
    if not len(sizes):
        return []
    # Centroids from per-label sums of the foreground's coordinates (one pass over the tumour voxels);
    # ndimage.center_of_mass makes a pass over the whole box per label.
    found = labels[labels > 0]
    coords = np.nonzero(labels)
    sums = [np.bincount(found, weights=c, minlength=len(sizes) + 1)[1:] for c in coords]
    centroids = np.stack(sums, axis=1) / sizes[:, None] + np.asarray(corner, float)
    order = np.argsort(-sizes, kind="stable")
    rows = []
    for rank, label in enumerate(order, start=1):
        ci, cj, ck = (round(float(c), 2) for c in centroids[label])  # in the whole mask's indices
        voxels = int(sizes[label])
        rows.append(
            {
                "component": rank,
                "voxels": voxels,
                "ml": _ml(voxels, voxel_ml),
                "centroid_i": ci,
                "centroid_j": cj,
                "centroid_k": ck,
            }
        )
    return rows
