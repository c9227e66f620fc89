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
- **Field of view** (option): the slices are cropped or padded to a square window around the head,
  sized so that the head fills the share of the slice it filled in kaggle_3m (:data:`HEAD_FRACTION`).
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
    "HEAD_FRACTION",
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
#: The head's largest in-plane extent over the slice side in kaggle_3m (median over 24 non-test patients of
#: lgg-dev measured with :func:`head_box`; range 0.79-0.98).
HEAD_FRACTION = 0.88


@dataclass(frozen=True)
class Frame:
    """How a volume was brought to the model's frame, to take its mask back.

    Attributes:
        source_shape: the volume's ``X x Y x Z``.
        source_affine: its voxel -> RAS affine.
        affine: model-frame voxel (row, column, slice) -> RAS, before any field-of-view window.
        shape: the model-frame grid (rows, columns, slices) before any field-of-view window.
        source_ornt, target_ornt: nibabel orientations of the volume's axes and of the model's; None
            when the volume was resliced.
        box: the field-of-view window ``(row0, col0, rows, cols)`` in that grid (may reach outside
            it: padding), or None.
        spacing_known: whether the source gave real voxel sizes.
    """

    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    affine: np.ndarray
    shape: tuple[int, int, int]
    source_ornt: np.ndarray | None
    target_ornt: np.ndarray | None
    box: tuple[int, int, int, int] | None = None
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


def head_box(flair: np.ndarray) -> tuple[int, int, int, int]:
    """The head's in-plane bounding box ``(row0, col0, rows, cols)`` from a ``rows x cols x slices`` FLAIR.

    The mean over slices, smoothed, above 15 % of its 99th percentile; its largest connected part.
    """
    mean = ndimage.gaussian_filter(flair.astype(np.float32).mean(axis=2), 2.0)
    head = mean > 0.15 * max(float(np.percentile(mean, 99)), 1e-6)
    labels, n = ndimage.label(head)
    if n == 0:
        return 0, 0, flair.shape[0], flair.shape[1]
    largest = 1 + int(np.argmax(ndimage.sum(head, labels, range(1, n + 1))))
    rows, cols = ndimage.find_objects((labels == largest).astype(np.int32))[0]
    return rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start


def _crop(data: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``data``'s (rows x cols first) part inside ``box``; zero where the box reaches outside (padding)."""
    r0, c0, h, w = box
    out = np.zeros((h, w, *data.shape[2:]), data.dtype)
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, data.shape[0]), max(c0, 0), min(c0 + w, data.shape[1])
    out[rs - r0 : re_ - r0, cs - c0 : ce - c0] = data[rs:re_, cs:ce]
    return out


def _uncrop(window: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """The reverse of :func:`_crop`: ``window`` put back into a zero array of in-plane ``shape``."""
    r0, c0, h, w = box
    out = np.zeros((*shape, *window.shape[2:]), window.dtype)
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, shape[0]), max(c0, 0), min(c0 + w, shape[1])
    out[rs:re_, cs:ce] = window[rs - r0 : re_ - r0, cs - c0 : ce - c0]
    return out


def _fov_box(flair: np.ndarray) -> tuple[int, int, int, int]:
    r0, c0, h, w = head_box(flair)
    side = max(MIN_SIZE, math.ceil(max(h, w) / HEAD_FRACTION))
    return r0 + h // 2 - side // 2, c0 + w // 2 - side // 2, side, side


def to_model_frame(
    volume: Volume,
    orientation: Sequence[str] = KAGGLE_3M_ORIENTATION,
    *,
    field_of_view: bool = False,
    max_tilt: float = MAX_TILT_DEGREES,
) -> tuple[np.ndarray, Frame]:
    """Bring a volume to the model's frame (see the module docstring).

    Args:
        volume: the scan as stored (``extra["as_stored"]``: a file without orientation, read with its
            first two axes as rows and columns and the last as slices).
        orientation: the model's (row, column, slice) axis codes (:func:`model_orientation`).
        field_of_view: crop or pad the slices to a square window around the head (see the module docstring).
        max_tilt: axes tilted by more than this many degrees are resliced rather than permuted.

    Returns:
        ``(array, frame)``: ``S x H x W x C`` (the volume's dtype; float32 when resliced, uint8 kept) and
        the :class:`Frame` that :func:`from_model_frame` needs.

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
        frame = Frame(volume.shape, affine, grid, out.shape[:3], source, target, None, volume.spacing_known)
    else:
        grid, shape = _axial_grid(affine, data.shape[:3], target)
        out = resample(data, affine, shape, grid, order=1)
        frame = Frame(volume.shape, affine, grid, shape, None, None, None, volume.spacing_known)
    if min(out.shape[:2]) < MIN_SIZE:
        raise GliomasegError(
            f"{volume.source}: slices of {out.shape[0]} x {out.shape[1]} voxels in the model's orientation are too "
            f"small (at least {MIN_SIZE} x {MIN_SIZE}); check the file's affine (its axis directions and voxel sizes)"
        )
    if field_of_view:
        box = _fov_box(out[..., 1 if out.shape[-1] == 3 else 0])
        out = _crop(out, box)
        frame = Frame(**{**frame.__dict__, "box": box})
    return np.ascontiguousarray(np.moveaxis(out, 2, 0)), frame


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
    if frame.box is not None:
        data = _uncrop(data, frame.box, frame.shape[:2])
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
    if frame.box is not None:
        out = _crop(out, frame.box)
    return np.ascontiguousarray(np.moveaxis(out, 2, 0))
