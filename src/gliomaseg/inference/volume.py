"""The one type that carries a scan's geometry from its reader to the writers of its results.

Readers (NIfTI, DICOM series, kaggle_3m folders, slice images) return a :class:`Volume`; the
orientation step brings it to the model's frame and back; the writers put a mask into the
volume's own geometry (same shape and affine for NIfTI, the source instances for DICOM SEG). No
stage guesses the geometry from a file name or a shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Volume"]


@dataclass(frozen=True)
class Volume:
    """A scan as stored, with its geometry.

    Attributes:
        array: ``X x Y x Z x C`` voxels in the source's own index order (no reorientation); ``C``
            channels in the model's order (pre-contrast, FLAIR, post-contrast; a missing sequence
            is a copy of FLAIR, as in kaggle_3m). An integer type (as stored) or float32.
        affine: ``4 x 4`` map from voxel index ``(i, j, k, 1)`` to world millimetres in RAS+
            (nibabel's convention; DICOM's LPS is converted by the reader).
        source: the file or folder it was read from.
        kind: the reader that made it: ``nifti``, ``dicom``, ``patient`` (kaggle_3m folder),
            ``volume`` (folder of numbered slices) or ``slice``.
        spacing_known: False when the source gave no real voxel size (slice images, kaggle_3m
            TIFFs, a NIfTI with pixdim 0): volumes are then reported in voxels, not mL.
        extra: reader-specific details the writers need (e.g. the source DICOM datasets for a
            DICOM SEG, the NIfTI header to copy); never patient identifiers in file names or logs.

    Example:
        >>> import numpy as np
        >>> v = Volume(np.zeros((4, 4, 2, 3), np.uint8), np.diag([0.5, 0.5, 2.0, 1.0]), Path("x.nii.gz"), "nifti")
        >>> v.spacing, v.voxel_ml
        ((0.5, 0.5, 2.0), 0.0005)
    """

    array: np.ndarray
    affine: np.ndarray
    source: Path
    kind: str
    spacing_known: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The spatial shape ``X x Y x Z``."""
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array's three axes (norms of the affine's columns)."""
        norms = np.linalg.norm(np.asarray(self.affine, dtype=float)[:3, :3], axis=0)
        return tuple(float(n) for n in norms)  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float | None:
        """One voxel's volume in millilitres, or None when the source gave no real voxel size."""
        if not self.spacing_known:
            return None
        return float(np.prod(self.spacing)) / 1000.0
