"""``nifti_to_uint8``: the fast integer path (histogram + lookup table) equals the float path voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.inference.nifti import _PERCENTILES, nifti_to_uint8


def _float_path(data: np.ndarray) -> np.ndarray:
    """The reference: percentiles by sorting, linear scaling in float32 (what float inputs go through)."""
    out = np.zeros(data.shape, np.uint8)
    for c in range(data.shape[-1]):
        channel = data[..., c].astype(np.float32)
        lo, hi = np.percentile(channel, _PERCENTILES)
        if hi > lo:
            out[..., c] = np.clip(np.rint((channel - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [
        (np.int16, -1000, 3000),  # CT-like signed values
        (np.uint16, 0, 60000),  # a wide unsigned range
        (np.int8, -100, 100),  # the offset would wrap around in int8
        (np.int32, -5, 5),  # few distinct values: percentiles between them
        (np.uint8, 7, 7),  # uint8 is kept as it is
        (np.int64, 3, 3),  # a constant channel -> 0
    ],
)
@pytest.mark.parametrize("shape", [(30, 20, 7, 1), (17, 11, 3, 3), (1, 1, 1, 1), (2, 1, 1, 1)])
def test_integer_scaling_equals_the_float_path(dtype, low, high, shape):
    data = np.random.default_rng(0).integers(low, high + 1, shape).astype(dtype)
    expected = data if dtype == np.uint8 else _float_path(data)
    np.testing.assert_array_equal(nifti_to_uint8(data), expected)


def test_skewed_scanner_like_values_and_fortran_order():
    data = np.asfortranarray(np.random.default_rng(1).gamma(2.0, 300.0, (64, 48, 9, 1)).astype(np.int16))
    np.testing.assert_array_equal(nifti_to_uint8(data), _float_path(data))


def test_a_range_too_wide_for_a_table_takes_the_float_path():
    data = np.array([0, 1, 2, 1 << 30], np.int64).reshape(4, 1, 1, 1)
    np.testing.assert_array_equal(nifti_to_uint8(data), _float_path(data))
