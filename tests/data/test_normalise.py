"""Tests of the preprocessing settings, per-volume normalisation and resizing."""

from __future__ import annotations

import numpy as np
import pytest

from gliomaseg.data.normalise import (
    PreprocessConfig,
    context_index,
    normalise_volume,
    preprocess_volume,
    resize_volume,
    stack_context,
)

# --------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"size": 40}, ValueError, "size=40"),
        ({"size": 16}, ValueError, "size=16"),
        ({"size": 64.0}, TypeError, "size=64.0"),
        ({"normalisation": "minmax"}, ValueError, "normalisation='minmax'"),
        ({"context_slices": 4}, ValueError, "context_slices=4"),
        ({"context_slices": -1}, ValueError, "context_slices=-1"),
        ({"context_slices": 1.0}, ValueError, "context_slices=1.0"),
        ({"context_slices": True}, ValueError, "context_slices=True"),
    ],
)
def test_config_validation(kwargs: dict, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        PreprocessConfig(**kwargs)


def test_config_roundtrip() -> None:
    cfg = PreprocessConfig(size=64, normalisation="reference")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"size": 64, "normalisation": "reference", "context_slices": 0}
    # settings written before context_slices existed read as single-slice input
    assert PreprocessConfig.from_dict({"size": 64, "normalisation": "reference"}) == cfg
    with pytest.raises(ValueError, match="colour"):
        PreprocessConfig.from_dict({"size": 64, "colour": 1})


# ---------------------------------------------------------------------------- context slices (2.5D)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (1, 0, [[0]]),
        (3, 0, [[0], [1], [2]]),
        (1, 1, [[0, 0, 0]]),  # a single slice is its own neighbours
        (2, 1, [[0, 0, 1], [0, 1, 1]]),
        (4, 1, [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]),
        (3, 2, [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 2]]),
        (
            5,
            3,
            [
                [0, 0, 0, 0, 1, 2, 3],
                [0, 0, 0, 1, 2, 3, 4],
                [0, 0, 1, 2, 3, 4, 4],
                [0, 1, 2, 3, 4, 4, 4],
                [1, 2, 3, 4, 4, 4, 4],
            ],
        ),
    ],
)
def test_context_index_repeats_the_edge_slice(n: int, k: int, expected: list[list[int]]) -> None:
    assert context_index(n, k).tolist() == expected


def test_stack_context_puts_each_neighbour_s_three_sequences_in_slice_order() -> None:
    # slice s, sequence c holds the value 10 s + c
    volume = (10 * np.arange(4)[:, None, None, None] + np.arange(3)).astype(np.float32) * np.ones((4, 2, 2, 3))
    stacked = stack_context(volume, 1)
    assert stacked.shape == (4, 2, 2, 9)
    assert stacked[0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 10, 11, 12]  # below the first slice: itself
    assert stacked[2, 1, 1].tolist() == [10, 11, 12, 20, 21, 22, 30, 31, 32]
    assert stacked[3, 0, 1].tolist() == [20, 21, 22, 30, 31, 32, 30, 31, 32]
    assert stack_context(volume, 0) is volume


def test_preprocess_volume_stacks_after_the_per_volume_normalisation() -> None:
    volume = np.random.default_rng(0).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    single = preprocess_volume(volume, PreprocessConfig(size=32))
    stacked = preprocess_volume(volume, PreprocessConfig(size=32, context_slices=2))
    assert single.shape == (5, 32, 32, 3) and stacked.shape == (5, 32, 32, 15)
    np.testing.assert_array_equal(stacked[..., 6:9], single)  # the centre slice, normalised over the volume
    np.testing.assert_array_equal(stacked[1, ..., :3], single[0])  # two below slice 1: the first slice again
    np.testing.assert_array_equal(stacked[1, ..., 12:], single[3])
    assert PreprocessConfig(size=32, context_slices=2).channels == 15
    assert PreprocessConfig(size=32, context_slices=2).per_slice() == PreprocessConfig(size=32)


# --------------------------------------------------------------------------------- normalisation


def _two_level_volume() -> np.ndarray:
    """2 x 10 x 10 x 3: half background (0), half head alternating 10/20, plus one outlier 250."""
    vol = np.zeros((2, 10, 10, 3), np.uint8)
    vol[:, :5] = 10
    vol[:, :5, ::2] = 20
    vol[0, 0, 0] = 250
    return vol


def test_zscore_hand_computed() -> None:
    vol = _two_level_volume()
    out = normalise_volume(vol, "zscore")
    assert out.dtype == np.float32 and out.shape == vol.shape
    # 200 voxels per channel, sorted: 100 zeros, 49 tens, 50 twenties, one 250.
    # 99.5th percentile (linear): position 0.995 * 199 = 198.005 -> 20 + 0.005 * (250 - 20) = 21.15
    top = 21.15
    head = np.array([10.0] * 50 + [20.0] * 49 + [top])
    mean, std = head.mean(), head.std()
    assert out[0, 0, 0, 1] == pytest.approx((top - mean) / std, abs=1e-5)  # outlier clipped
    assert out[0, 0, 1, 0] == pytest.approx((10 - mean) / std, abs=1e-5)
    assert out[1, 0, 0, 2] == pytest.approx((20 - mean) / std, abs=1e-5)
    # Background keeps the value raw 0 maps to.
    np.testing.assert_allclose(out[:, 5:], -mean / std, rtol=1e-5)
    inside = out[vol > 0]
    assert abs(inside.mean()) < 1e-5 and inside.std() == pytest.approx(1.0, abs=1e-5)


def test_zscore_head_stats_on_random_volume() -> None:
    rng = np.random.default_rng(0)
    vol = np.zeros((4, 32, 32, 3), np.uint8)
    vol[:, 8:24, 8:24] = rng.integers(1, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    out = normalise_volume(vol, "zscore")
    for c in range(3):
        inside = out[..., c][vol[..., c] > 0]
        # Clipping the top 0.5 % shifts the stats only slightly.
        assert abs(inside.mean()) < 0.02 and abs(inside.std() - 1.0) < 0.02


def test_zscore_falls_back_to_all_voxels_and_handles_empty_channel() -> None:
    vol = np.zeros((1, 20, 20, 3), np.uint8)
    # 3 of 400 voxels > 0: fewer than 1 %, so all voxels give the stats. (3 so that the 99.5th
    # percentile, position 397.005 of 0..399, is 100 and clipping leaves them alone.)
    vol[0, 0, :3, 0] = 100
    out = normalise_volume(vol, "zscore")
    ch = out[..., 0]
    mean, std = 0.75, np.sqrt(3 / 400 * 100**2 - 0.75**2)
    assert ch[0, 0, 0] == pytest.approx((100 - mean) / std, rel=1e-5)
    assert abs(ch.mean()) < 1e-5 and ch.std() == pytest.approx(1.0, abs=1e-4)
    # Channels 1 and 2 are all zero: std 0 -> left at 0 rather than NaN.
    assert np.all(out[..., 1:] == 0)


def test_reference_matches_direct_numpy() -> None:
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    vol[:, :4] = 0
    x = vol.astype(np.float64)
    p10, p99 = np.percentile(x, (10, 99))
    r = np.clip((x - p10) / (p99 - p10), 0, 1)  # skimage rescale_intensity(in_range=(p10, p99))
    expected = (r - r.mean(axis=(0, 1, 2))) / r.std(axis=(0, 1, 2))
    np.testing.assert_allclose(normalise_volume(vol, "reference"), expected, atol=1e-5)


def test_scale_and_single_slice() -> None:
    rng = np.random.default_rng(2)
    sl = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(normalise_volume(sl, "scale")[0], sl / 255.0, atol=1e-7)
    # A single slice is a volume of one: same result as passing it with S = 1.
    np.testing.assert_array_equal(normalise_volume(sl, "zscore"), normalise_volume(sl[None], "zscore"))


@pytest.mark.parametrize(
    ("volume", "error"),
    [(np.zeros((2, 8, 8, 3), np.float32), TypeError), (np.zeros((2, 8, 8), np.uint8), ValueError)],
)
def test_normalise_rejects_bad_input(volume: np.ndarray, error: type) -> None:
    with pytest.raises(error):
        normalise_volume(volume, "zscore")


# -------------------------------------------------------------------------------------- resizing


def test_resize_mask_nearest_stays_binary() -> None:
    mask = np.array([[[0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]], np.uint8)
    up = resize_volume(mask, 8, "mask")
    np.testing.assert_array_equal(up[0], np.kron(mask[0], np.ones((2, 2), np.uint8)))
    down = resize_volume(up, 4, "mask")
    np.testing.assert_array_equal(down, mask)
    rng = np.random.default_rng(3)
    odd = resize_volume((rng.random((2, 32, 32)) > 0.5).astype(np.uint8), 48, "mask")
    assert set(np.unique(odd)) <= {0, 1} and odd.shape == (2, 48, 48)


def test_resize_image_bilinear() -> None:
    const = np.full((2, 8, 8, 3), 1.5, np.float32)
    np.testing.assert_allclose(resize_volume(const, 16, "image"), 1.5)
    ramp = np.tile(np.arange(8, dtype=np.float32)[None, None, :, None], (1, 8, 1, 3))
    down = resize_volume(ramp, 4, "image")
    # Halving with INTER_LINEAR samples between pixel pairs: (0+1)/2, (2+3)/2, ...
    np.testing.assert_allclose(down[0, 0, :, 0], [0.5, 2.5, 4.5, 6.5])
    assert resize_volume(const, 8, "image") is const  # already that size


def test_resize_rejects_bad_kind() -> None:
    with pytest.raises(ValueError, match="kind='label'"):
        resize_volume(np.zeros((1, 4, 4), np.uint8), 8, "label")


def test_preprocess_volume_normalises_then_resizes() -> None:
    rng = np.random.default_rng(4)
    vol = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    cfg = PreprocessConfig(size=32)
    expected = resize_volume(normalise_volume(vol, "zscore"), 32, "image")
    np.testing.assert_array_equal(preprocess_volume(vol, cfg), expected)


@pytest.mark.parametrize("mode", ["zscore", "reference", "scale"])
@pytest.mark.parametrize("size", [64, 96])
def test_flair_broadcast_to_three_channels_preprocesses_exactly_like_three_copies(mode: str, size: int):
    # A FLAIR-only scan is read as one channel broadcast to three; its one-channel path must give the
    # network the very numbers three copies give it.
    flair = np.random.default_rng(3).integers(0, 256, (5, 80, 72), dtype=np.uint8)
    flair[:, :10] = 0  # a background, as in a head
    shared = np.broadcast_to(flair[..., None], (*flair.shape, 3))
    copies = np.repeat(flair[..., None], 3, axis=-1)
    cfg = PreprocessConfig(size=size, normalisation=mode)
    np.testing.assert_array_equal(preprocess_volume(shared, cfg), preprocess_volume(copies, cfg))
    np.testing.assert_array_equal(normalise_volume(shared, mode), normalise_volume(copies, mode))
