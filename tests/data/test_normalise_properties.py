"""Property-based tests (Hypothesis) of the normalisation: finite output of the right shape for any
uint8 volume, z-scored channel statistics, and independence from the training size."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gliomaseg.data.normalise import NORMALISATIONS, PreprocessConfig, normalise_volume, preprocess_volume

FAST = settings(max_examples=30, deadline=None)


@st.composite
def volumes(draw: st.DrawFn) -> np.ndarray:
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 20)), draw(st.integers(2, 20)), 3)
    return draw(arrays(np.uint8, shape, elements=st.integers(0, 255) | st.sampled_from([0, 255])))


@FAST
@given(volume=volumes(), mode=st.sampled_from(NORMALISATIONS), size=st.sampled_from([32, 64]))
def test_output_is_finite_float32_of_the_training_size(volume: np.ndarray, mode: str, size: int) -> None:
    out = preprocess_volume(volume, PreprocessConfig(size=size, normalisation=mode))
    assert out.dtype == np.float32 and out.shape == (volume.shape[0], size, size, 3)
    assert np.isfinite(out).all()


@FAST
@given(volume=volumes())
def test_zscore_channels_have_zero_mean_and_unit_spread_inside_the_head(volume: np.ndarray) -> None:
    out = normalise_volume(volume, "zscore")
    for c in range(3):
        raw, values = volume[..., c], out[..., c].astype(np.float64)
        head = raw > 0
        if head.sum() < max(0.01 * raw.size, 1):
            head = np.ones_like(raw, dtype=bool)
        top = np.percentile(raw, 99.5)  # bright outliers are clipped before the statistics
        clipped = np.minimum(raw[head].astype(np.float64), top)
        if clipped.std() > 1e-3:
            assert abs(values[head].mean()) < 1e-3
            assert abs(values[head].std() - 1) < 1e-3
        # monotone: a brighter raw value never maps to a darker normalised one
        order = np.argsort(raw.ravel(), kind="stable")
        assert np.all(np.diff(values.ravel()[order]) >= -1e-5)


@FAST
@given(volume=volumes(), mode=st.sampled_from(NORMALISATIONS))
def test_a_slice_alone_is_a_volume_of_one(volume: np.ndarray, mode: str) -> None:
    np.testing.assert_array_equal(normalise_volume(volume[0], mode), normalise_volume(volume[:1], mode))
