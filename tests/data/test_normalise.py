"""Tests of normalisation, resizing and the memory-mapped slice cache."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.data.cache import build_cache, cache_key, open_cache
from gliomaseg.data.normalise import PreprocessConfig, normalise_volume, preprocess_volume, resize_volume


def _make_dataset(root: Path, slices: dict[str, int], hw: int = 32, seed: int = 0) -> pd.DataFrame:
    """Write tiny kaggle_3m-style TIFFs and return an index-like table (sorted by patient, slice)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:hw, :hw]
    head = (yy - hw / 2) ** 2 + (xx - hw / 2) ** 2 < (0.4 * hw) ** 2
    rows = []
    for pid, n in slices.items():
        folder = root / pid
        folder.mkdir(parents=True)
        for s in range(1, n + 1):
            img = np.zeros((hw, hw, 3), np.uint8)
            img[head] = rng.integers(40, 200, size=(int(head.sum()), 3), dtype=np.uint8)
            mask = np.zeros((hw, hw), np.uint8)
            if s % 2 == 0:
                mask[hw // 3 : hw // 2, hw // 3 : hw // 2 + s] = 255
            ip, mp = folder / f"{pid}_{s}.tif", folder / f"{pid}_{s}_mask.tif"
            Image.fromarray(img).save(ip)
            Image.fromarray(mask).save(mp)
            px = int((mask > 0).sum())
            rows.append(
                {
                    "patient_id": pid,
                    "site": pid.split("_")[1],
                    "slice": s,
                    "image_path": str(ip),
                    "mask_path": str(mp),
                    "tumour_pixels": px,
                    "has_tumour": px > 0,
                }
            )
    return pd.DataFrame(rows)


def _read_volume(table: pd.DataFrame, pid: str) -> tuple[np.ndarray, np.ndarray]:
    sub = table[table["patient_id"] == pid]
    imgs = np.stack([np.asarray(Image.open(p)) for p in sub["image_path"]])
    masks = np.stack([(np.asarray(Image.open(p)) > 0).astype(np.uint8) for p in sub["mask_path"]])
    return imgs, masks


@pytest.fixture
def tiny(tmp_path: Path) -> pd.DataFrame:
    return _make_dataset(tmp_path / "data", {"TCGA_AA_0001_2000": 3, "TCGA_BB_0002_2000": 2})


# --------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"size": 40}, ValueError, "size=40"),
        ({"size": 16}, ValueError, "size=16"),
        ({"size": 64.0}, TypeError, "size=64.0"),
        ({"normalisation": "minmax"}, ValueError, "normalisation='minmax'"),
    ],
)
def test_config_validation(kwargs: dict, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        PreprocessConfig(**kwargs)


def test_config_roundtrip() -> None:
    cfg = PreprocessConfig(size=64, normalisation="reference")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict() == {"size": 64, "normalisation": "reference"}
    with pytest.raises(ValueError, match="colour"):
        PreprocessConfig.from_dict({"size": 64, "colour": 1})


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


# ----------------------------------------------------------------------------------------- cache


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_roundtrip(tiny: pd.DataFrame, tmp_path: Path, workers: int) -> None:
    cfg = PreprocessConfig(size=64)
    path = build_cache(tiny, tmp_path / "cache", cfg, workers=workers)
    assert path.parent == tmp_path / "cache" and path.name == cache_key(tiny, cfg)
    cache = open_cache(path)
    assert cache.images.dtype == np.float16 and cache.images.shape == (5, 64, 64, 3)
    assert cache.masks.dtype == np.uint8 and cache.masks.shape == (5, 64, 64)
    assert isinstance(cache.images, np.memmap)
    assert cache.patients == ["TCGA_AA_0001_2000", "TCGA_BB_0002_2000"]
    assert cache.config == cfg
    assert cache.slices.columns.tolist() == ["patient_id", "slice", "row", "has_tumour", "tumour_pixels"]
    for pid in cache.patients:
        rows = cache.rows_of(pid)
        imgs, masks = _read_volume(tiny, pid)
        expected = preprocess_volume(imgs, cfg)
        np.testing.assert_allclose(cache.images[rows].astype(np.float32), expected, rtol=1e-3, atol=2e-3)
        np.testing.assert_array_equal(cache.masks[rows], resize_volume(masks, 64, "mask"))
    # 32 -> 64 nearest doubles each side: 4x the tumour pixels of the index.
    np.testing.assert_array_equal(cache.slices["tumour_pixels"], 4 * tiny["tumour_pixels"].to_numpy())
    np.testing.assert_array_equal(cache.slices["has_tumour"], tiny["has_tumour"].to_numpy())
    meta = json.loads((path / "meta.json").read_text())
    assert meta["n"] == 5 and meta["config"] == cfg.to_dict() and "version" in meta and "created" in meta
    with pytest.raises(KeyError, match="TCGA_XX"):
        cache.rows_of("TCGA_XX")


def test_cache_pickles_as_path(tiny: pd.DataFrame, tmp_path: Path) -> None:
    cache = open_cache(build_cache(tiny, tmp_path / "cache", PreprocessConfig(size=32), workers=1))
    blob = pickle.dumps(cache)
    assert len(blob) < 10_000  # not the arrays
    again = pickle.loads(blob)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(again.images, cache.images)


def test_key_changes_with_setting_and_file(tiny: pd.DataFrame) -> None:
    base = cache_key(tiny, PreprocessConfig(size=32))
    assert cache_key(tiny, PreprocessConfig(size=32)) == base
    assert cache_key(tiny, PreprocessConfig(size=64)) != base
    assert cache_key(tiny, PreprocessConfig(size=32, normalisation="scale")) != base
    path = tiny["image_path"].iloc[0]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache_key(tiny, PreprocessConfig(size=32)) != base
    assert cache_key(tiny.iloc[:-1], PreprocessConfig(size=32)) != base


def test_reuse_returns_same_path_fast(tiny: pd.DataFrame, tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=32)
    first = build_cache(tiny, tmp_path / "cache", cfg, workers=1)
    stamp = (first / "images.npy").stat().st_mtime_ns
    t = time.perf_counter()
    second = build_cache(tiny, tmp_path / "cache", cfg, workers=1)
    assert time.perf_counter() - t < 0.5
    assert second == first and (first / "images.npy").stat().st_mtime_ns == stamp
    other = build_cache(tiny, tmp_path / "cache", PreprocessConfig(size=64), workers=1)
    assert other != first and sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([first.name, other.name])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("workers", [1, 2])
def test_failed_build_leaves_nothing(tiny: pd.DataFrame, tmp_path: Path, workers: int) -> None:
    bad = Path(tiny["image_path"].iloc[-1])
    bad.write_bytes(b"II*\x00 not really a tiff")
    root = tmp_path / "cache"
    with pytest.raises(ValueError, match=bad.name):
        build_cache(tiny, root, PreprocessConfig(size=32), workers=workers)
    assert list(root.iterdir()) == []


def test_open_cache_rejects_non_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no meta.json"):
        open_cache(tmp_path)


def test_build_cache_rejects_bad_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mask_path"):
        build_cache(pd.DataFrame({"patient_id": ["a"], "slice": [1], "image_path": ["x"]}), tmp_path)
