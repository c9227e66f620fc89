"""Tests of the memory-mapped slice cache: round trip, pickling, keys, reuse, failed builds."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.data.cache import build_cache, cache_key, open_cache
from gliomaseg.data.normalise import PreprocessConfig, preprocess_volume, resize_volume


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


def test_one_single_slice_cache_serves_every_context_slices(tiny: pd.DataFrame, tmp_path: Path) -> None:
    base = build_cache(tiny, tmp_path, PreprocessConfig(size=32), workers=1)
    assert build_cache(tiny, tmp_path, PreprocessConfig(size=32, context_slices=2), workers=1) == base
    cache = open_cache(base)
    assert cache.config == PreprocessConfig(size=32) and cache.images.shape[-1] == 3
    # the key of a cache built before the setting existed: the settings without it
    assert base.name == _key_without_context_slices(tiny, PreprocessConfig(size=32))
    table = cache.context_rows(1)
    for patient in cache.patients:
        rows = cache.rows_of(patient)
        assert table[rows[0]].tolist() == [rows[0], rows[0], rows[1]]
        assert table[rows[-1]].tolist() == [rows[-2], rows[-1], rows[-1]]


def _key_without_context_slices(table: pd.DataFrame, cfg: PreprocessConfig) -> str:
    import hashlib
    import json

    from gliomaseg.data.cache import CACHE_FORMAT

    files = [
        [str(i), str(m), *(v for f in (i, m) for v in (os.stat(f).st_size, os.stat(f).st_mtime_ns))]
        for i, m in zip(table["image_path"], table["mask_path"])
    ]
    settings = {"size": cfg.size, "normalisation": cfg.normalisation}
    blob = json.dumps(
        {"format": CACHE_FORMAT, "config": settings, "files": files}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def test_reuse_returns_same_path(tiny: pd.DataFrame, tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=32)
    first = build_cache(tiny, tmp_path / "cache", cfg, workers=1)
    stamp = (first / "images.npy").stat().st_mtime_ns
    # A build starts in a temporary folder inside the cache root; a reuse leaves the root untouched.
    os.utime(tmp_path / "cache", ns=(0, 0))
    second = build_cache(tiny, tmp_path / "cache", cfg, workers=1)
    assert (tmp_path / "cache").stat().st_mtime_ns == 0
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
