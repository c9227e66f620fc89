"""Property-based tests (Hypothesis) of the slice readers: lossless round trips, and any bytes at all
either read as a valid slice or raise GliomasegError naming the file (never another exception)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gliomaseg.data.io import read_image, read_image_any, read_mask, write_image, write_mask
from gliomaseg.errors import GliomasegError

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sides = st.integers(1, 24)
suffixes = st.sampled_from([".png", ".tif"])


@st.composite
def rgb_images(draw: st.DrawFn) -> np.ndarray:
    return draw(arrays(np.uint8, (draw(sides), draw(sides), 3)))


@FAST
@given(image=rgb_images(), suffix=suffixes)
def test_images_round_trip_exactly(image: np.ndarray, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(Path(tmp) / f"s{suffix}", image)
        back = read_image(path)
        assert back.dtype == np.uint8 and back.shape == image.shape
        np.testing.assert_array_equal(back, image)
        np.testing.assert_array_equal(read_image_any(path), image)


@FAST
@given(mask=st.integers(1, 24).flatmap(lambda h: arrays(np.bool_, (h, h + 3))), suffix=suffixes)
def test_masks_round_trip_as_zero_one(mask: np.ndarray, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = read_mask(write_mask(Path(tmp) / f"m{suffix}", mask))
        assert back.dtype == np.uint8 and set(np.unique(back).tolist()) <= {0, 1}
        np.testing.assert_array_equal(back, mask.astype(np.uint8))


@FAST
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".png", ".tif", ".jpg"]), valid_prefix=st.booleans())
def test_any_bytes_read_as_a_valid_slice_or_a_named_error(data: bytes, suffix: str, valid_prefix: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        if valid_prefix:  # a real file's header with arbitrary bytes after it: a damaged download
            head = write_image(Path(tmp) / f"ok{suffix}", np.full((8, 8, 3), 9, np.uint8)).read_bytes()[:40]
            data = head + data
        path.write_bytes(data)
        for read in (read_image, read_image_any, read_mask):
            try:
                out = read(path)
            except GliomasegError as err:
                assert str(path) in str(err)
            else:
                assert out.dtype == np.uint8 and out.ndim in (2, 3)
