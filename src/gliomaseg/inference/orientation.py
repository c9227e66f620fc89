"""Bringing a scan to the model's frame, and a mask back to the scan's own voxel grid.

The model's frame is ``S x H x W``: slices whose (row, column, slice) indices point the way the
training slices' did, written as nibabel axis codes in the model file (``orientation``; models
without it were trained on kaggle_3m: :data:`~gliomaseg.data.io.KAGGLE_3M_ORIENTATION`, ``P, L, S``).

- **Axis-aligned** scans (any of the 48 permutations and flips, tilted by at most ``max_tilt``
  degrees, as an axial acquisition angled along the AC-PC line is) are permuted and flipped with
  nibabel's orientation tools: exact and lossless both ways, so the mask comes back voxel for voxel.
- **Other scans** (tilted more, or with in-plane pixels that would not be square, e.g. a
  thick-slice sagittal) are resliced onto a grid whose axes are the model's directions in world
  space (linear interpolation); the mask goes back by nearest neighbour, probabilities linearly.

The field-of-view window around the head is applied later, by the segmenter, on the model-frame
volume (:mod:`gliomaseg.inference.field_of_view`), so the frame here is the volume's whole slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from gliomaseg.data.io import KAGGLE_3M_ORIENTATION
from gliomaseg.data.normalise import MIN_SIZE
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.volume import Volume

__all__ = [
    "MAX_TILT_DEGREES",
    "Frame",
    "from_model_frame",
    "into_model_frame",
    "model_orientation",
    "resample",
    "to_model_frame",
]

#: Axes tilted by more than this from the nearest world axis are resliced instead of permuted.
MAX_TILT_DEGREES = 25.0
#: In-plane voxel sides differing by more than this factor (a thick-slice sagittal or coronal turned axial) are
#: resliced to square pixels; milder anisotropy is left to the resize to the training size.
_MAX_ANISOTROPY = 1.5
#: A resliced slice has at most this many pixels per side (coarser spacing beyond).
_MAX_SIDE = 512


@dataclass(frozen=True)
class Frame:
    """How a volume was brought to the model's frame, to take its mask back.

    Attributes:
        source_shape: the volume's ``X x Y x Z``.
        source_affine: its voxel -> RAS affine.
        affine: model-frame voxel (row, column, slice) -> RAS.
        shape: the model-frame grid (rows, columns, slices).
        source_ornt, target_ornt: nibabel orientations of the volume's axes and of the model's; None
            when the volume was resliced.
        spacing_known: whether the source gave real voxel sizes.
    """

    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    affine: np.ndarray
    shape: tuple[int, int, int]
    source_ornt: np.ndarray | None
    target_ornt: np.ndarray | None
    spacing_known: bool = True

    @property
    def resliced(self) -> bool:
        """True when the volume was resampled (not merely permuted and flipped)."""
        return self.source_ornt is None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Model-frame voxel size (row, column, slice) in mm."""
        return tuple(float(n) for n in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def model_orientation(meta: dict[str, Any] | None) -> tuple[str, str, str]:
    """The axis codes of a model file's (row, column, slice) indices (kaggle_3m's when not recorded).

    Raises:
        GliomasegError: a recorded orientation that is not three distinct axis codes.
    """
    codes = (meta or {}).get("orientation") or KAGGLE_3M_ORIENTATION
    codes = tuple(str(c).upper() for c in codes)
    axes = {c: i for i, pair in enumerate(("LR", "PA", "IS")) for c in pair}
    if len(codes) != 3 or any(c not in axes for c in codes) or len({axes[c] for c in codes}) != 3:
        raise GliomasegError(f"model orientation {codes}: expected three axis codes, one each of L/R, P/A, I/S")
    return codes  # type: ignore[return-value]


def _ornt(codes: Sequence[str]) -> np.ndarray:
    import nibabel.orientations as no

    return no.axcodes2ornt(tuple(codes))


def _tilt_degrees(affine: np.ndarray) -> float:
    import nibabel.affines as na

    return float(np.degrees(np.max(na.obliquity(affine))))


def resample(
    data: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray, order: int = 1
) -> np.ndarray:
    """Resample ``data`` (``X x Y x Z`` or ``X x Y x Z x C``) onto another grid of the same world.

    Args:
        data: the values on the grid ``affine`` describes.
        affine: its voxel -> world map.
        shape: the target grid's spatial shape.
        target_affine: the target grid's voxel -> world map.
        order: 0 nearest neighbour (masks), 1 linear (images, probabilities).

    Returns:
        ``shape (+ C)`` array: float32 for order 1 (uint8 stays uint8, rounded), the input dtype for order 0;
        outside the source 0.
    """
    # Target voxel -> source voxel; scipy's affine_transform is the resampler (exact for order 0).
    step = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(target_affine, float)
    channels = data[..., None] if data.ndim == 3 else data
    out_dtype = channels.dtype if order == 0 or channels.dtype == np.uint8 else np.float32
    out = np.zeros((*[int(n) for n in shape], channels.shape[-1]), out_dtype)
    for c in range(channels.shape[-1]):
        source = channels[..., c] if order == 0 else channels[..., c].astype(np.float32)
        moved = ndimage.affine_transform(
            source, step[:3, :3], step[:3, 3], output_shape=out.shape[:3], order=order, mode="constant", cval=0
        )
        out[..., c] = np.clip(np.rint(moved), 0, 255) if out_dtype == np.uint8 and order else moved
    return out[..., 0] if data.ndim == 3 else out


def _axial_grid(affine: np.ndarray, shape: Sequence[int], target: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """A grid whose axes are the model's world directions, covering the volume, with square in-plane pixels."""
    import nibabel.affines as na
    import nibabel.orientations as no

    source = no.io_orientation(affine)
    zooms = na.voxel_sizes(affine)
    directions, spacing = [], []
    for axis, flip in target:
        unit = np.zeros(3)
        unit[int(axis)] = flip
        directions.append(unit)
        # The spacing along a model axis: the source's along its closest voxel axis.
        spacing.append(float(zooms[int(np.flatnonzero(source[:, 0] == axis)[0])]))
    spacing[0] = spacing[1] = min(spacing[0], spacing[1])  # square pixels, at the finer resolution
    corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in shape], indexing="ij")).reshape(3, -1)
    world = na.apply_affine(affine, corners.T)  # 8 x 3
    along = world @ np.array(directions).T  # 8 x 3: projections on the model's directions
    low, extent = along.min(0), np.ptp(along, 0)
    spacing = [max(s, e / _MAX_SIDE) for s, e in zip(spacing, extent)]
    spacing[0] = spacing[1] = max(spacing[0], spacing[1])
    grid_shape = tuple(max(1, math.ceil(e / s - 1e-6)) for e, s in zip(extent, spacing))
    grid = np.eye(4)
    grid[:3, :3] = np.array(directions).T * np.array(spacing)
    grid[:3, 3] = np.array(directions).T @ (low + np.array(spacing) / 2)
    return grid, grid_shape


def to_model_frame(
    volume: Volume,
    orientation: Sequence[str] = KAGGLE_3M_ORIENTATION,
    *,
    max_tilt: float = MAX_TILT_DEGREES,
) -> tuple[np.ndarray, Frame]:
    """Bring a volume to the model's frame (see the module docstring).

    Args:
        volume: the scan as stored (``extra["as_stored"]``: a file without orientation, read with its
            first two axes as rows and columns and the last as slices).
        orientation: the model's (row, column, slice) axis codes (:func:`model_orientation`).
        max_tilt: axes tilted by more than this many degrees are resliced rather than permuted.

    Returns:
        ``(array, frame)``: ``S x H x W x C`` (the volume's dtype; float32 when resliced, uint8 kept) and
        the :class:`Frame` that :func:`from_model_frame` needs. A volume only permuted and flipped comes as
        a view of ``volume.array`` (the uint8 scaling reads it where it lies: no copy of the raw volume).

    Raises:
        GliomasegError: slices smaller than 32 x 32 in the model's frame.
    """
    import nibabel.orientations as no

    data = np.asarray(volume.array)
    data = data[..., None] if data.ndim == 3 else data
    affine = np.asarray(volume.affine, float)
    target = _ornt(orientation)
    as_stored = bool(volume.extra.get("as_stored"))
    source = target if as_stored else no.io_orientation(affine)
    step = no.ornt_transform(source, target)
    grid = affine @ no.inv_ornt_aff(step, data.shape[:3])
    zooms = np.linalg.norm(grid[:3, :3], axis=0)
    square = not volume.spacing_known or max(zooms[:2]) <= _MAX_ANISOTROPY * min(zooms[:2])
    if as_stored or (_tilt_degrees(affine) <= max_tilt and square):
        out = no.apply_orientation(data, step)
        frame = Frame(volume.shape, affine, grid, out.shape[:3], source, target, volume.spacing_known)
    else:
        grid, shape = _axial_grid(affine, data.shape[:3], target)
        out = resample(data, affine, shape, grid, order=1)
        frame = Frame(volume.shape, affine, grid, shape, None, None, volume.spacing_known)
    if min(out.shape[:2]) < MIN_SIZE:
        raise GliomasegError(
            f"{volume.source}: slices of {out.shape[0]} x {out.shape[1]} voxels in the model's orientation are too "
            f"small (at least {MIN_SIZE} x {MIN_SIZE}); check the file's affine (its axis directions and voxel sizes)"
        )
    return np.moveaxis(out, 2, 0), frame


def from_model_frame(mask: np.ndarray, frame: Frame, *, order: int = 0) -> np.ndarray:
    """Put a model-frame mask (or probability map) back into the volume's own voxel grid.

    Args:
        mask: ``S x H x W`` as the model saw the volume (bool/uint8 mask, or float probabilities).
        frame: from :func:`to_model_frame`.
        order: for resliced volumes, 0 nearest neighbour (masks) or 1 linear (probabilities; threshold
            them afterwards). Permuted volumes come back exactly either way.

    Returns:
        ``X x Y x Z``: the volume's own shape (mask dtype; float32 for resliced probabilities); a view of
        ``mask`` when the volume was only permuted and flipped.
    """
    import nibabel.orientations as no

    data = np.moveaxis(np.asarray(mask), 0, 2)
    if frame.source_ornt is not None and frame.target_ornt is not None:
        # a view: the NIfTI writer makes its one Fortran-order copy, which for this transpose is a plain copy
        return no.apply_orientation(data, no.ornt_transform(frame.target_ornt, frame.source_ornt))
    values = data.astype(np.float32) if order else data.astype(np.uint8)  # scipy resamples no bool arrays
    moved = resample(values, frame.affine, frame.source_shape, frame.source_affine, order)
    return moved.astype(data.dtype) if order == 0 else moved


def into_model_frame(mask: np.ndarray, frame: Frame) -> np.ndarray:
    """Bring a mask on the volume's own grid (``X x Y x Z``, e.g. a reference segmentation) to the model's frame.

    The way :func:`to_model_frame` took the volume (nearest neighbour when it was resliced), so the mask
    lines up with the slices the model saw.

    Args:
        mask: ``X x Y x Z`` bool or integer labels on the volume's grid.
        frame: from :func:`to_model_frame`.

    Returns:
        ``S x H x W`` of the mask's dtype.
    """
    import nibabel.orientations as no

    data = np.asarray(mask)
    if frame.source_ornt is not None and frame.target_ornt is not None:
        out = no.apply_orientation(data, no.ornt_transform(frame.source_ornt, frame.target_ornt))
    else:
        moved = resample(data.astype(np.uint8), frame.source_affine, frame.shape, frame.affine, order=0)
        out = moved.astype(data.dtype)
    return np.ascontiguousarray(np.moveaxis(out, 2, 0))
