"""Shape features on shapes with known answers: boxes, spheres, ellipsoids, discs, ellipses, stars, crosses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gliomaseg.errors import GliomasegError
from gliomaseg.radiogenomics.shape import (
    FEATURES,
    angular_standard_deviation,
    bounding_ellipsoid_volume_ratio,
    margin_fluctuation,
    radial_profile,
    shape_features,
)

BOX_RATIO = 2 / (math.pi * math.sqrt(3))  # a box fills this much of its minimum enclosing ellipsoid


def _ellipsoid(shape: tuple[int, int, int], axes: tuple[float, float, float]) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    centre = [(n - 1) / 2 for n in shape]
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)) <= 1


def _polar(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((size, size), dtype=float) - (size - 1) / 2
    return np.hypot(yy, xx), np.arctan2(yy, xx)


def _star(radius: float, eps: float, lobes: int) -> np.ndarray:
    """The region ``r <= R (1 + eps cos(n theta))``: normalised profile ``1 + eps cos(n theta)``."""
    r, theta = _polar()
    return r <= radius * (1 + eps * np.cos(lobes * theta))


@pytest.mark.parametrize("dims", [(1, 1, 1), (4, 4, 4), (3, 10, 6), (2, 17, 9)])
def test_bevr_of_a_box_is_exact(dims):
    mask = np.zeros((8, 24, 24), bool)
    mask[1 : 1 + dims[0], 2 : 2 + dims[1], 3 : 3 + dims[2]] = True
    assert bounding_ellipsoid_volume_ratio(mask) == pytest.approx(BOX_RATIO, rel=1e-3)


@pytest.mark.parametrize("axes", [(16, 16, 16), (10, 30, 20), (12, 30, 20)])
def test_bevr_of_an_ellipsoid_is_near_one_whatever_its_axes(axes):
    # Digitisation: the ellipsoid must enclose whole voxels, so a bit less than 1 at this size.
    ratio = bounding_ellipsoid_volume_ratio(_ellipsoid((36, 64, 48), axes))
    assert 0.85 < ratio <= 1.0


def test_bevr_ignores_the_slice_thickness():
    # The ratio is invariant under scaling an axis, so the unknown kaggle_3m spacing cannot change it.
    cross = np.zeros((12, 48, 48), bool)
    cross[4:8, 20:28, 2:46] = True
    cross[4:8, 2:46, 20:28] = True
    cross[0:12, 20:28, 20:28] = True
    thick = np.repeat(cross, 3, axis=0)
    assert bounding_ellipsoid_volume_ratio(thick) == pytest.approx(bounding_ellipsoid_volume_ratio(cross), rel=1e-3)
    assert bounding_ellipsoid_volume_ratio(cross) < 0.25  # far from its ellipsoid, unlike a ball


@pytest.mark.parametrize("radius", [30.0, 80.0])
def test_radial_profile_of_a_disc_is_its_radius(radius):
    r, _ = _polar()
    profile = radial_profile(r <= radius)
    assert profile.shape == (360,)
    np.testing.assert_allclose(profile, radius, atol=0.6)


@pytest.mark.parametrize(("radius", "limit"), [(30.0, 0.01), (80.0, 0.005)])
def test_a_disc_has_no_angular_sd_and_no_margin_fluctuation(radius, limit):
    r, _ = _polar()
    profile = radial_profile(r <= radius)
    assert angular_standard_deviation(profile) < limit
    assert margin_fluctuation(profile) < limit


@pytest.mark.parametrize(("eps", "lobes"), [(0.1, 10), (0.2, 10), (0.2, 20)])
def test_star_features_match_the_closed_form(eps, lobes):
    # rho = 1 + eps cos(n theta); a 36-degree sector and the 36-degree window hold whole periods
    # when n is a multiple of 10: SD within a sector eps/sqrt(2), moving average 1.
    profile = radial_profile(_star(80, eps, lobes))
    expected = eps / math.sqrt(2)
    assert angular_standard_deviation(profile) == pytest.approx(expected, abs=0.006)
    assert margin_fluctuation(profile) == pytest.approx(expected, abs=0.006)


@pytest.mark.parametrize(("a", "b"), [(90, 50), (100, 30)])
def test_ellipse_features_match_its_exact_profile(a, b):
    # The exact boundary distance of an ellipse at angle theta, fed to the same formulas.
    theta = 2 * np.pi * np.arange(360) / 360
    exact = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    r, phi = _polar()
    profile = radial_profile((r * np.cos(phi) / a) ** 2 + (r * np.sin(phi) / b) ** 2 <= 1)
    np.testing.assert_allclose(profile, exact, atol=0.7)
    assert angular_standard_deviation(profile) == pytest.approx(angular_standard_deviation(exact), abs=0.003)
    assert margin_fluctuation(profile) == pytest.approx(margin_fluctuation(exact), abs=0.003)
    # A smooth margin fluctuates less than a lobed one of the same size.
    assert margin_fluctuation(profile) < margin_fluctuation(radial_profile(_star(80, 0.1, 10)))


def test_angular_sd_needs_equal_sectors():
    with pytest.raises(GliomasegError, match="sectors"):
        angular_standard_deviation(np.ones(365))


def test_features_of_a_ball():
    ball = _ellipsoid((30, 64, 64), (12, 24, 24))  # 2:1 in-plane to slice: thick slices
    f = shape_features(ball)
    assert set(f) == {feat.name for feat in FEATURES}
    assert f["volume"] == ball.sum()
    assert f["slice_extent"] == 24  # slices 3..26, where |z - 14.5| <= 12
    assert f["elongation"] == pytest.approx(1.0, abs=0.02)  # round in-plane
    assert f["angular_sd"] < 0.01
    # With the true spacing the ball is a sphere: sphericity close to 1, and the volume scales.
    sphere = shape_features(ball, spacing=(2.0, 1.0, 1.0))
    assert sphere["volume"] == 2 * ball.sum()
    assert 0.85 < sphere["sphericity"] <= 1.0  # marching cubes keeps some of the voxel staircase
    assert sphere["sphericity"] > f["sphericity"]


def test_elongation_is_the_axis_ratio_of_the_largest_slice():
    f = shape_features(_ellipsoid((9, 96, 96), (3, 40, 20)))
    assert f["elongation"] == pytest.approx(0.5, abs=0.02)
    assert f["largest_slice_area"] == pytest.approx(math.pi * 40 * 20, rel=0.02)


def test_largest_region_of_the_largest_slice_is_used():
    r, _ = _polar(128)
    slice_ = r <= 30
    slice_[:5, :5] = True  # a speck in a corner must not move the centroid
    mask = np.zeros((3, 128, 128), bool)
    mask[1] = slice_
    assert shape_features(mask)["angular_sd"] < 0.01


def test_empty_mask_gives_nan_and_bad_shape_raises():
    assert all(math.isnan(v) for v in shape_features(np.zeros((4, 16, 16), bool)).values())
    with pytest.raises(GliomasegError, match="S x H x W"):
        shape_features(np.ones((16, 16), bool))
