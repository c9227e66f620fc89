"""Tumour shape features of one patient's binary mask volume (radiogenomics, Buda et al. 2019).

The three features of Buda, Saha, Mazurowski (Computers in Biology and Medicine 109, 2019;
arXiv 1906.03720), introduced by Czarnek et al. (J Neurooncol 2017) and Mazurowski et al.
(J Neurooncol 2017), with the definitions written out in ``docs/radiogenomics.md``:

- **bounding ellipsoid volume ratio** (3D): tumour volume over the volume of the minimum-volume
  ellipsoid that encloses it. The ratio is invariant under any linear map of the coordinates,
  so the unknown voxel spacing of ``kaggle_3m`` (thick slices) does not change it.
- **angular standard deviation** and **margin fluctuation** (2D, on the slice with the largest
  tumour area): both read the normalised radial profile ``rho(theta) = r(theta) / mean r``, the
  distance from the tumour's centroid to its outer margin in direction ``theta`` divided by its
  mean, so they are scale-free.

Beside them, descriptive features from scikit-image: volume and surface area (``marching_cubes``
+ ``mesh_surface_area``) in voxel units (``spacing`` scales them when it is known), sphericity,
in-plane elongation of the largest slice (``regionprops``), and the slice extent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from gliomaseg.errors import GliomasegError

__all__ = [
    "FEATURES",
    "PAPER_FEATURES",
    "Feature",
    "angular_standard_deviation",
    "bounding_ellipsoid_volume_ratio",
    "margin_fluctuation",
    "radial_profile",
    "shape_features",
]


@dataclass(frozen=True)
class Feature:
    """A shape feature: its column name, label for tables and plots, and unit."""

    name: str
    label: str
    unit: str
    paper: bool = False


#: Every feature :func:`shape_features` returns, the paper's three first.
FEATURES: tuple[Feature, ...] = (
    Feature("bevr", "bounding ellipsoid volume ratio", "ratio, scale-free", paper=True),
    Feature("angular_sd", "angular standard deviation", "scale-free", paper=True),
    Feature("margin_fluctuation", "margin fluctuation", "scale-free", paper=True),
    Feature("volume", "volume", "voxels"),
    Feature("surface_area", "surface area", "voxel faces"),
    Feature("sphericity", "sphericity", "ratio, voxel units"),
    Feature("elongation", "elongation (largest slice)", "minor / major axis"),
    Feature("largest_slice_area", "largest slice area", "pixels"),
    Feature("slice_extent", "slice extent", "slices"),
)
PAPER_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.paper)

_N_ANGLES = 360  # samples of the radial profile, one per degree
_N_SECTORS = 10  # angular standard deviation: sectors of 36 degrees
_SMOOTH_FRACTION = 0.1  # margin fluctuation: moving-average window, 10% of the circle (36 degrees)


def _mvee_volume(points: np.ndarray, tol: float = 1e-5, max_iter: int = 50_000) -> float:
    """Volume of the minimum-volume enclosing ellipsoid of ``points`` (``N x d``).

    Khachiyan's algorithm with the away steps of Todd & Yildirim (Discrete Applied Mathematics
    155, 2007), which cut the iterations from tens of thousands to a few thousand. Neither SciPy,
    scikit-image nor scikit-learn has a minimum enclosing ellipsoid, hence these lines. The
    ellipsoid of the last iterate is grown until it encloses every point, so the volume is an
    upper bound within about ``d * tol / 2`` (relative) of the minimum.
    """
    n, d = points.shape
    q = np.vstack([points.T, np.ones(n)])  # (d + 1) x n, lifted points
    u = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        m = np.einsum("ij,ji->i", q.T, np.linalg.solve((q * u) @ q.T, q))
        j = int(np.argmax(m))
        support = np.flatnonzero(u > 0)
        i = int(support[np.argmin(m[support])])
        grow, shrink = m[j] / (d + 1) - 1, 1 - m[i] / (d + 1)
        if max(grow, shrink) <= tol:
            break
        k = j if grow >= shrink else i
        step = (m[k] - d - 1) / ((d + 1) * (m[k] - 1))
        if k == i:  # away step: take weight off the point deepest inside, at most all of it
            step = max(step, -u[i] / (1 - u[i]))
        u *= 1 - step
        u[k] += step
        u[u < 0] = 0.0
    centre = points.T @ u
    cov = (points.T * u) @ points - np.outer(centre, centre)
    shape = np.linalg.inv(cov) / d  # ellipsoid {x : (x - c)^T A (x - c) <= 1}
    diff = points - centre
    reach = float(np.max(np.einsum("ij,jk,ik->i", diff, shape, diff)))
    shape /= max(reach, 1.0)
    unit_ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1)
    return unit_ball / math.sqrt(float(np.linalg.det(shape)))


def bounding_ellipsoid_volume_ratio(mask: np.ndarray) -> float:
    """Tumour volume over the volume of the smallest ellipsoid enclosing it (3D).

    Each voxel is a unit cube; the ellipsoid must enclose every corner of every tumour voxel, so
    the ratio is at most 1, approaches 1 for a large digitised ellipsoid of any axes and is
    ``2 / (pi * sqrt(3)) = 0.3676`` for any box.

    Args:
        mask: ``S x H x W`` boolean volume.

    Returns:
        The ratio in ``(0, 1]``; NaN for an empty mask.

    Example:
        >>> box = np.zeros((6, 8, 8), bool)
        >>> box[1:4, 2:7, 3:5] = True
        >>> round(bounding_ellipsoid_volume_ratio(box), 3)  # 2 / (pi sqrt 3)
        0.368
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return math.nan
    # Only surface voxels can carry corners on the convex hull.
    surface = mask & ~ndimage.binary_erosion(mask)
    centres = np.argwhere(surface).astype(np.float64)
    offsets = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    corners = np.unique((centres[:, None, :] + offsets[None]).reshape(-1, 3), axis=0)
    hull = corners[ConvexHull(corners).vertices]
    return float(np.count_nonzero(mask)) / _mvee_volume(hull)


def largest_slice(mask: np.ndarray) -> int:
    """Index of the slice with the most tumour pixels (the first of ties); -1 for an empty mask."""
    areas = np.asarray(mask, bool).reshape(len(mask), -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.any() else -1


def radial_profile(region: np.ndarray, n_angles: int = _N_ANGLES) -> np.ndarray:
    """Distance from the region's centroid to its outer margin at ``n_angles`` equal angles.

    For each direction the margin is the farthest point along the ray from the centroid where the
    bilinearly interpolated mask crosses 0.5, so the profile is defined for any shape (for a
    region that is not star-shaped it follows the outer envelope).

    Args:
        region: ``H x W`` boolean mask of one connected region.
        n_angles: number of directions, starting at angle 0 and going round once.

    Returns:
        ``n_angles`` float64 distances in pixels.
    """
    cy, cx = ndimage.center_of_mass(region)
    reach = math.hypot(*region.shape) + 1
    radii = np.arange(0.0, reach, 0.25)
    theta = 2 * np.pi * np.arange(n_angles) / n_angles
    ys = cy + radii[None, :] * np.sin(theta)[:, None]
    xs = cx + radii[None, :] * np.cos(theta)[:, None]
    values = ndimage.map_coordinates(region.astype(np.float32), [ys, xs], order=1, cval=0.0)
    inside = values >= 0.5
    # Last sample inside along each ray, then the 0.5 crossing between it and the next sample.
    last = radii.size - 1 - np.argmax(inside[:, ::-1], axis=1)
    rows = np.arange(n_angles)
    nxt = np.minimum(last + 1, radii.size - 1)
    v0, v1 = values[rows, last], values[rows, nxt]
    frac = np.where(v0 > v1, (v0 - 0.5) / np.maximum(v0 - v1, 1e-12), 0.0)
    # A ray that never enters the region (centroid outside it) meets no margin: distance 0.
    return np.where(inside.any(axis=1), radii[last] + 0.25 * np.clip(frac, 0.0, 1.0), 0.0)


def _normalised(profile: np.ndarray) -> np.ndarray:
    profile = np.asarray(profile, np.float64)
    return profile / profile.mean()


def angular_standard_deviation(profile: np.ndarray, n_sectors: int = _N_SECTORS) -> float:
    """Mean over ``n_sectors`` equal angular sectors of the SD of the normalised radial profile.

    ``ASD = (1/K) sum_k SD{rho(theta) : theta in sector k}`` with ``rho = r / mean(r)``: 0 for a
    circle, larger the more the margin distance varies within each sector.

    Args:
        profile: radial profile at equal angles (:func:`radial_profile`); its length must be a
            multiple of ``n_sectors``.
        n_sectors: number of sectors.
    """
    rho = _normalised(profile)
    if rho.size % n_sectors:
        raise GliomasegError(f"profile of {rho.size} angles does not split into {n_sectors} equal sectors")
    return float(rho.reshape(n_sectors, -1).std(axis=1).mean())


def margin_fluctuation(profile: np.ndarray, window_fraction: float = _SMOOTH_FRACTION) -> float:
    """SD of the normalised radial profile minus its circular moving average.

    ``MF = SD(rho - smooth(rho))`` where ``smooth`` averages ``rho`` over a window of
    ``window_fraction`` of the circle (an odd number of samples, centred): 0 for a circle and for
    slowly varying margins (an ellipse), large for a margin with many small lobes.

    Args:
        profile: radial profile at equal angles (:func:`radial_profile`).
        window_fraction: moving-average window as a fraction of the full circle.
    """
    rho = _normalised(profile)
    window = max(1, int(round(window_fraction * rho.size)) // 2 * 2 + 1)
    smooth = ndimage.uniform_filter1d(rho, size=window, mode="wrap")
    return float(np.std(rho - smooth))


def _largest_region(slice_mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(slice_mask, structure=np.ones((3, 3)))
    if n <= 1:
        return slice_mask
    sizes = ndimage.sum_labels(slice_mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _surface_area(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    from skimage.measure import marching_cubes, mesh_surface_area

    # Crop to the tumour with a 1-voxel border: marching cubes needs the outside to close the surface.
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[box], 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(crop, level=0.5, spacing=spacing)
    return float(mesh_surface_area(verts, faces))


def shape_features(mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """Every feature of :data:`FEATURES` for one patient's mask volume.

    The 2D features use the largest 8-connected region of the slice with the largest tumour area.

    Args:
        mask: ``S x H x W`` boolean volume, slices in order.
        spacing: ``(slice, row, column)`` voxel size; scales volume, surface area and sphericity
            only (``kaggle_3m`` has none: the default treats voxels as unit cubes).

    Returns:
        Feature name -> value; all NaN for an empty mask.

    Raises:
        GliomasegError: ``mask`` is not 3D.

    Example:
        >>> zz, yy, xx = np.mgrid[:24, :48, :48]
        >>> ball = (zz - 11.5) ** 2 + (yy - 23.5) ** 2 + (xx - 23.5) ** 2 <= 10**2
        >>> features = shape_features(ball)
        >>> bool(features["volume"] == ball.sum()), features["angular_sd"] < 0.05  # a disc-like margin
        (True, True)
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise GliomasegError(f"expected an S x H x W mask volume, got shape {mask.shape}")
    if not mask.any():
        return {f.name: math.nan for f in FEATURES}
    from skimage.measure import regionprops

    k = largest_slice(mask)
    region = _largest_region(mask[k])
    profile = radial_profile(region)
    volume = float(np.count_nonzero(mask)) * float(np.prod(spacing))
    area = _surface_area(mask, spacing)
    props = regionprops(region.astype(np.uint8))[0]
    tumour_slices = np.flatnonzero(mask.any(axis=(1, 2)))
    return {
        "bevr": bounding_ellipsoid_volume_ratio(mask),
        "angular_sd": angular_standard_deviation(profile),
        "margin_fluctuation": margin_fluctuation(profile),
        "volume": volume,
        "surface_area": area,
        "sphericity": math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area,
        "elongation": props.axis_minor_length / props.axis_major_length if props.axis_major_length > 0 else math.nan,
        "largest_slice_area": float(np.count_nonzero(mask[k])),
        "slice_extent": float(tumour_slices[-1] - tumour_slices[0] + 1),
    }
