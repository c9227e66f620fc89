"""The 2D images of a DICOM series with their geometry, and whether they form one evenly spaced stack.

A classic file is one image; an enhanced multi-frame file is one image per frame, its geometry and
rescale read from the per-frame functional groups (falling back to the shared ones). The checks
refuse what a series reader would stack silently: localizers, too few slices, mixed sizes,
orientations or pixel spacings, a missing slice (a gap along the slice normal), several images at one
position, uneven spacing, positions off a straight line. Written by hand over pydicom's datasets:
no library checks these and says which one failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MIN_SLICES", "Frame2D", "describe", "frames_of", "stack_affine", "stack_problem"]

#: Fewer slices than this: a localizer or a single image, not a volume to segment.
MIN_SLICES = 6
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Frame2D:
    """One 2D image of a series: a classic file, or one frame of a multi-frame file."""

    index: int  # into the series' datasets
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, float]
    size: tuple[int, int]
    slope: float
    intercept: float
    localizer: bool


#: Where each value sits: (functional group sequence of enhanced files, attribute; classic files: the attribute).
_FIELDS = {
    "position": ("PlanePositionSequence", "ImagePositionPatient"),
    "orientation": ("PlaneOrientationSequence", "ImageOrientationPatient"),
    "spacing": ("PixelMeasuresSequence", "PixelSpacing"),
    "slope": ("PixelValueTransformationSequence", "RescaleSlope"),
    "intercept": ("PixelValueTransformationSequence", "RescaleIntercept"),
}


def _from_groups(groups: list[Any], sequence: str, attribute: str) -> Any:
    """An attribute of a functional group: the per-frame group first, then the shared one."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value) and attribute in group[sequence][0]:
            return group[sequence][0][attribute].value
    return None


def _make(index: int, frame: int | None, size: tuple[int, int], values: dict[str, Any], localizer: bool) -> Frame2D:
    position, orientation, spacing = values["position"], values["orientation"], values["spacing"]
    missing = position is None or orientation is None or spacing is None
    slope, intercept = values["slope"], values["intercept"]
    return Frame2D(
        index,
        frame,
        np.full(3, np.nan) if missing else np.array([float(v) for v in position]),
        np.full(6, np.nan) if missing else np.array([float(v) for v in orientation]),
        (np.nan, np.nan) if missing else (float(spacing[0]), float(spacing[1])),
        size,
        float(slope) if slope not in (None, "") else 1.0,
        float(intercept) if intercept not in (None, "") else 0.0,
        localizer,
    )


def frames_of(ds: Any, index: int) -> list[Frame2D]:
    """The 2D images of one dataset with their geometry and rescale (enhanced: from the functional groups).

    Args:
        ds: a pydicom dataset (headers suffice).
        index: its position in the series' list of datasets (kept on each image).
    """
    size = (int(ds.Rows), int(ds.Columns))
    image_type = [str(t).upper() for t in ds.get("ImageType", [])]
    if "PerFrameFunctionalGroupsSequence" not in ds:
        values = {name: ds.get(attribute) for name, (_, attribute) in _FIELDS.items()}
        return [_make(index, None, size, values, "LOCALIZER" in image_type)]
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    frames = []
    for i, per in enumerate(ds.PerFrameFunctionalGroupsSequence):
        groups = [per, shared]
        values = {name: _from_groups(groups, *where) for name, where in _FIELDS.items()}
        kind = [str(t).upper() for t in (_from_groups(groups, "MRImageFrameTypeSequence", "FrameType") or [])]
        frames.append(_make(index, i, size, values, "LOCALIZER" in image_type + kind))
    return frames


def stack_problem(frames: list[Frame2D]) -> str | None:
    """Why these images do not form one evenly spaced stack (None when they do); sorts ``frames`` by position."""
    if any(f.localizer for f in frames):
        return "a localizer (ImageType LOCALIZER)"
    if any(np.isnan(f.position).any() for f in frames):
        return "images without position or orientation (ImagePositionPatient/ImageOrientationPatient)"
    if len(frames) < MIN_SLICES:
        return f"only {len(frames)} slice(s), a localizer or single images ({MIN_SLICES} or more needed)"
    if len({f.size for f in frames}) > 1:
        return f"mixed image sizes ({', '.join(sorted({f'{r} x {c}' for r, c in (f.size for f in frames)}))})"
    first = frames[0]
    if any(not np.allclose(f.orientation, first.orientation, atol=1e-3) for f in frames):
        return "mixed orientations (ImageOrientationPatient differs between images)"
    if any(not np.allclose(f.spacing, first.spacing, rtol=1e-3) for f in frames):
        return "inconsistent pixel spacing between images"
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    frames.sort(key=lambda f: float(f.position @ normal))
    along = np.array([f.position @ normal for f in frames])
    gaps = np.diff(along)
    step = float(np.median(gaps))
    if gaps.min() < 0.01 * max(step, 1e-3):
        return "several images at one position (echoes, phases or repeats in one series)"
    if gaps.max() > 1.5 * step:
        k = int(np.argmax(gaps))
        return (
            f"missing slice(s): {gaps[k]:.3g} mm between the slices at {along[k]:.1f} and {along[k + 1]:.1f} mm, "
            f"where the others are {step:.3g} mm apart"
        )
    if np.abs(gaps - step).max() > 0.1 * step:
        return f"inconsistent slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm)"
    ideal = np.linspace(frames[0].position, frames[-1].position, len(frames))
    if np.abs(np.array([f.position for f in frames]) - ideal).max() > 0.2 * min(first.spacing):
        return "slice positions not on one straight line"
    return None


def stack_affine(frames: list[Frame2D]) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS for frames sorted by position."""
    first = frames[0]
    affine = np.eye(4)
    affine[:3, 0] = first.orientation[:3] * first.spacing[1]  # along a row: the column spacing
    affine[:3, 1] = first.orientation[3:] * first.spacing[0]
    if len(frames) > 1:
        affine[:3, 2] = (frames[-1].position - first.position) / (len(frames) - 1)
    else:
        affine[:3, 2] = np.cross(first.orientation[:3], first.orientation[3:])
    affine[:3, 3] = first.position
    return _LPS_TO_RAS @ affine


def describe(affine: np.ndarray) -> tuple[str, str]:
    import nibabel as nib

    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    axis = int(np.argmax(np.abs(normal)))
    tilted = np.degrees(np.arccos(min(1.0, abs(normal[axis])))) > 25
    plane = "oblique" if tilted else ("sagittal", "coronal", "axial")[axis]
    return plane, "".join(nib.aff2axcodes(affine))
