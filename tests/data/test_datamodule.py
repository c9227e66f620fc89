"""Tests of the slice dataset (augmenting image and mask together) and the LightningDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gliomaseg.data.augment import AugmentConfig, build_augmentation
from gliomaseg.data.cache import build_cache, open_cache
from gliomaseg.data.datamodule import GliomaDataModule, SliceDataset, _seed_worker
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.data.splits import SPLITS_FORMAT

HW = 32
PATIENTS = [f"TCGA_AA_{i:04d}_2000" for i in range(6)]
N_SLICES = 5
TUMOUR_SLICES = (2, 3)  # 2 of 5 slices per patient carry a tumour


def _write_dataset(root: Path) -> pd.DataFrame:
    """Tiny slices whose FLAIR is 200 inside an off-centre tumour, 100 elsewhere in the head, 0 outside.

    So ``mask == (FLAIR > threshold)`` holds on every slice, and the pattern is asymmetric so a flip
    of the image without the mask (or the reverse) would break it.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HW, :HW]
    head = (yy - 16) ** 2 + (xx - 16) ** 2 < 13**2
    rows = []
    for p, pid in enumerate(PATIENTS):
        (root / pid).mkdir(parents=True)
        for s in range(1, N_SLICES + 1):
            mask = np.zeros((HW, HW), np.uint8)
            if s in TUMOUR_SLICES:
                mask[8 + p : 14 + p, 18:25] = 1
            img = np.zeros((HW, HW, 3), np.uint8)
            img[head, 0] = rng.integers(50, 150, int(head.sum()))
            img[head, 1] = 100
            img[mask > 0, 1] = 200
            img[head, 2] = rng.integers(50, 150, int(head.sum()))
            ip, mp = root / pid / f"{pid}_{s}.tif", root / pid / f"{pid}_{s}_mask.tif"
            Image.fromarray(img).save(ip)
            Image.fromarray(mask * 255).save(mp)
            rows.append(
                {
                    "patient_id": pid,
                    "site": "AA",
                    "slice": s,
                    "image_path": str(ip),
                    "mask_path": str(mp),
                    "tumour_pixels": int(mask.sum()),
                    "has_tumour": bool(mask.any()),
                }
            )
    return pd.DataFrame(rows)


def _splits(train: list[str], val: list[str], test: list[str]) -> dict:
    return {
        "format": SPLITS_FORMAT,
        "seed": 0,
        "test_fraction": 0.0,
        "val_fraction": 0.0,
        "n_folds": 1,
        "stratify": [],
        "index_patients": len(train) + len(val) + len(test),
        "test": sorted(test),
        "folds": [{"train": sorted(train), "val": sorted(val)}],
        "strata": {},
    }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dm")
    table = _write_dataset(root / "data")
    return build_cache(table, root / "cache", PreprocessConfig(size=HW), workers=1)


@pytest.fixture
def splits() -> dict:
    return _splits(PATIENTS[:3], [PATIENTS[4], PATIENTS[3]], [PATIENTS[5]])


NO_AUG = AugmentConfig(enabled=False)
HFLIP_ONLY = AugmentConfig(hflip_p=1.0, vflip_p=0.0, affine_p=0.0, brightness_contrast_p=0.0)
FLIPS = AugmentConfig(hflip_p=0.5, vflip_p=0.5, affine_p=0.0, brightness_contrast_p=0.0)
AFFINE_ONLY = AugmentConfig(hflip_p=0.0, vflip_p=0.0, affine_p=1.0, brightness_contrast_p=0.0)
EVERYTHING = AugmentConfig(hflip_p=1.0, vflip_p=1.0, affine_p=1.0, brightness_contrast_p=1.0)


def _flair_threshold(cache, row: int) -> float:
    """Midpoint between the tumour and non-tumour FLAIR levels of a cached slice."""
    img, mask = cache.images[row, ..., 1].astype(np.float32), cache.masks[row].astype(bool)
    return float((img[~mask].max() + img[mask].min()) / 2)


def test_batch_shapes_and_dtypes(cache_dir: Path, splits: dict) -> None:
    dm = GliomaDataModule(cache_dir, splits, batch_size=4, augment=NO_AUG)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, HW, HW) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, HW, HW) and batch["mask"].dtype == torch.float32
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert batch["patient_index"].dtype == torch.int64 and batch["row"].shape == (4,)
    assert len(dm.train_dataset) == 3 * N_SLICES
    assert len(dm.val_dataset) == 2 * N_SLICES and len(dm.test_dataset) == N_SLICES
    assert dm.preprocess_config == PreprocessConfig(size=HW)


def test_hflip_moves_image_and_mask_together(cache_dir: Path) -> None:
    cache = open_cache(cache_dir)
    rows = cache.rows_of(PATIENTS[0])
    ds = SliceDataset(cache, rows, {PATIENTS[0]: 0}, build_augmentation(HFLIP_ONLY, seed=0))
    for i, row in enumerate(rows):
        item = ds[i]
        expected_img = cache.images[row].astype(np.float32)[:, ::-1].transpose(2, 0, 1)
        np.testing.assert_array_equal(item["image"].numpy(), expected_img)
        np.testing.assert_array_equal(item["mask"][0].numpy(), cache.masks[row][:, ::-1])


@pytest.mark.parametrize("augment", [FLIPS, AFFINE_ONLY, EVERYTHING])
def test_augmentation_keeps_image_and_mask_aligned(cache_dir: Path, augment: AugmentConfig) -> None:
    cache = open_cache(cache_dir)
    rows = np.concatenate([cache.rows_of(p) for p in PATIENTS[:2]])
    ds = SliceDataset(cache, rows, {p: i for i, p in enumerate(PATIENTS[:2])}, build_augmentation(augment, 1))
    for _ in range(3):
        for i, row in enumerate(rows):
            if not cache.slices["has_tumour"].iloc[row]:
                continue
            item = ds[i]
            mask = item["mask"][0].numpy()
            assert set(np.unique(mask)) <= {0.0, 1.0}
            if augment.brightness_contrast_p > 0:
                continue  # brightness shifts the threshold; alignment is covered by the other cases
            from_image = item["image"][1].numpy() > _flair_threshold(cache, row)
            mismatch = int((from_image != mask.astype(bool)).sum())
            if augment.affine_p == 0:
                assert mismatch == 0  # flips are exact
            else:
                # bilinear image vs nearest mask may disagree on the tumour's rim only
                assert mismatch <= 0.15 * cache.masks[row].sum()


def test_val_and_test_are_not_augmented_and_ordered(cache_dir: Path, splits: dict) -> None:
    dm = GliomaDataModule(cache_dir, splits, batch_size=3, augment=EVERYTHING)
    dm.setup()
    cache = dm.cache
    assert dm.val_patients == sorted([PATIENTS[3], PATIENTS[4]])
    for loader, patients in (
        (dm.val_dataloader(), dm.val_patients),
        (dm.test_dataloader(), dm.test_patients),
    ):
        rows, pidx = [], []
        for batch in loader:
            for img, msk, row in zip(batch["image"], batch["mask"], batch["row"].tolist()):
                np.testing.assert_array_equal(img.numpy(), cache.images[row].astype(np.float32).transpose(2, 0, 1))
                np.testing.assert_array_equal(msk[0].numpy(), cache.masks[row])
            rows += batch["row"].tolist()
            pidx += batch["patient_index"].tolist()
        seen = cache.slices.iloc[rows]
        assert [patients[i] for i in pidx] == seen["patient_id"].tolist()
        # ordered by patient, then slice
        assert list(zip(seen["patient_id"], seen["slice"])) == sorted(zip(seen["patient_id"], seen["slice"]))
        assert sorted(set(seen["patient_id"])) == patients


def test_train_patient_index(cache_dir: Path, splits: dict) -> None:
    dm = GliomaDataModule(cache_dir, splits, batch_size=5, augment=NO_AUG)
    dm.setup()
    for batch in dm.train_dataloader():
        for pi, row in zip(batch["patient_index"].tolist(), batch["row"].tolist()):
            assert dm.train_patients[pi] == dm.cache.slices["patient_id"].iloc[row]


def test_train_shuffle_is_seeded(cache_dir: Path, splits: dict) -> None:
    def order(seed: int) -> list[int]:
        dm = GliomaDataModule(cache_dir, splits, batch_size=15, augment=NO_AUG, seed=seed)
        return next(iter(dm.train_dataloader()))["row"].tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(order(2))


@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_tumour_fraction_sampling(cache_dir: Path, splits: dict, fraction: float) -> None:
    dm = GliomaDataModule(cache_dir, splits, augment=NO_AUG, tumour_fraction=fraction, seed=3)
    dm.setup()
    sampler = dm.train_dataloader().sampler
    assert len(sampler) == len(dm.train_dataset)  # epoch length unchanged
    has_tumour = dm.train_dataset.has_tumour
    assert has_tumour.mean() == pytest.approx(0.4)
    draws = np.concatenate([np.fromiter(iter(sampler), dtype=np.int64) for _ in range(100)])
    assert abs(has_tumour[draws].mean() - fraction) < 0.05
    again = GliomaDataModule(cache_dir, splits, augment=NO_AUG, tumour_fraction=fraction, seed=3)
    again.setup()
    assert list(again.train_dataloader().sampler) == list(
        GliomaDataModule(cache_dir, splits, augment=NO_AUG, tumour_fraction=fraction, seed=3).train_dataloader().sampler
    )


def test_missing_patients_are_named(cache_dir: Path) -> None:
    bad = _splits(PATIENTS[:2] + ["TCGA_ZZ_9999_2000"], [PATIENTS[3]], [])
    dm = GliomaDataModule(cache_dir, bad)
    with pytest.raises(ValueError, match="TCGA_ZZ_9999_2000"):
        dm.setup()


def test_no_test_part(cache_dir: Path) -> None:
    dm = GliomaDataModule(cache_dir, _splits(PATIENTS[:4], PATIENTS[4:], []), augment=NO_AUG)
    assert dm.test_patients == []
    with pytest.raises(ValueError, match="no test part"):
        dm.test_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_workers": -1}, "num_workers=-1"),
        ({"tumour_fraction": 1.5}, "tumour_fraction=1.5"),
        ({"fold": 1}, "fold=1"),
    ],
)
def test_datamodule_rejects_bad_arguments(cache_dir: Path, splits: dict, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GliomaDataModule(cache_dir, splits, **kwargs)


def test_each_worker_gets_its_own_augmentation_stream(cache_dir: Path) -> None:
    cache = open_cache(cache_dir)
    row = int(cache.rows_of(PATIENTS[0])[TUMOUR_SLICES[0] - 1])
    hflip = AugmentConfig(hflip_p=0.5, vflip_p=0.0, affine_p=0.0, brightness_contrast_p=0.0)
    ds = SliceDataset(cache, np.full(32, row), {PATIENTS[0]: 0}, build_augmentation(hflip, seed=0))
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=16,
        num_workers=2,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(0),
    )
    # The tumour sits right of centre; flipped copies have it on the left.
    flipped = [tuple((b["mask"][:, 0].sum(dim=1).argmax(dim=1) < HW // 2).tolist()) for b in loader]
    assert len(flipped) == 2 and flipped[0] != flipped[1]  # copies of one pipeline would repeat


def test_workers_load_from_memmap(cache_dir: Path, splits: dict) -> None:
    dm = GliomaDataModule(cache_dir, splits, batch_size=5, num_workers=2, augment=FLIPS)
    batches = list(dm.train_dataloader())
    assert sum(len(b["row"]) for b in batches) == 3 * N_SLICES
    assert all(set(torch.unique(b["mask"]).tolist()) <= {0.0, 1.0} for b in batches)


@pytest.mark.real
def test_real_patients_end_to_end(real_patients: Path, tmp_path: Path) -> None:
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.splits import make_splits, part_patients

    root = real_patients
    table = index_dataset(root).table
    splits = make_splits(table, test_fraction=0.34, val_fraction=0.34, seed=0)
    assert [len(part_patients(splits, p)) for p in ("train", "val", "test")] == [1, 1, 1]
    cache_dir = build_cache(table, tmp_path / "cache", PreprocessConfig(size=64))
    cache = open_cache(cache_dir)
    assert cache.images.shape == (len(table), 64, 64, 3)
    assert int(cache.slices["has_tumour"].sum()) > 0
    dm = GliomaDataModule(cache_dir, splits, batch_size=4, tumour_fraction=0.5)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 1, 64, 64)
    assert torch.isfinite(batch["image"]).all()
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    val = next(iter(dm.val_dataloader()))
    assert dm.val_patients[int(val["patient_index"][0])] in set(table["patient_id"])


# ---------------------------------------------------------------------------- context slices (2.5D)


@pytest.mark.parametrize("k", [1, 2])
def test_context_slices_stack_the_same_patient_s_neighbours_in_slice_order(cache_dir: Path, k: int) -> None:
    cache = open_cache(cache_dir)
    patients = PATIENTS[:2]
    rows = np.concatenate([cache.rows_of(p) for p in patients])
    ds = SliceDataset(cache, rows, {p: i for i, p in enumerate(patients)}, context_slices=k)
    single = SliceDataset(cache, rows, {p: i for i, p in enumerate(patients)})
    batch = ds.__getitems__(list(range(len(rows)))).stacked
    assert batch["image"].shape == (len(rows), 3 * (2 * k + 1), HW, HW)
    for i, row in enumerate(rows):
        own = cache.rows_of(patients[i // N_SLICES])  # this item's patient, ordered by slice
        position = int(np.flatnonzero(own == row)[0])
        for j, offset in enumerate(range(-k, k + 1)):
            neighbour = own[min(max(position + offset, 0), N_SLICES - 1)]  # the edge slice repeated
            expected = cache.images[neighbour].astype(np.float32).transpose(2, 0, 1)
            np.testing.assert_array_equal(batch["image"][i, 3 * j : 3 * j + 3].numpy(), expected)
        # the target, row and patient are the centre slice's, as without neighbours
        np.testing.assert_array_equal(batch["image"][i, 3 * k : 3 * k + 3].numpy(), single[i]["image"].numpy())
        np.testing.assert_array_equal(batch["mask"][i].numpy(), single[i]["mask"].numpy())
    assert batch["row"].tolist() == rows.tolist()


def test_context_slices_augment_every_stacked_slice_alike(tmp_path: Path) -> None:
    """Patients of one slice stack it three times (the edge rule); the three stay equal through the whole
    robust recipe but its noise, which real slices get independently."""
    from dataclasses import replace

    from gliomaseg.data.augment import AUGMENT_PRESETS, split_augmentation

    table = _write_dataset(tmp_path / "data")
    one_slice = table[table["slice"] == TUMOUR_SLICES[0]]
    cache = open_cache(build_cache(one_slice, tmp_path / "cache", PreprocessConfig(size=HW), workers=1))
    rows = np.concatenate([cache.rows_of(p) for p in PATIENTS])
    recipe = replace(AUGMENT_PRESETS["robust"], noise_p=0.0, affine_p=1.0, skull_strip_p=0.5)
    batch_aug, per_slice = split_augmentation(recipe, seed=3)
    ds = SliceDataset(cache, rows, {p: i for i, p in enumerate(PATIENTS)}, per_slice, batch_aug, context_slices=1)
    for _ in range(4):
        image = ds.__getitems__(list(range(len(rows)))).stacked["image"].numpy()
        np.testing.assert_allclose(image[:, 0:3], image[:, 3:6], atol=1e-5)
        np.testing.assert_allclose(image[:, 6:9], image[:, 3:6], atol=1e-5)


def test_datamodule_passes_context_slices_and_checks_them(cache_dir: Path, splits: dict) -> None:
    dm = GliomaDataModule(cache_dir, splits, batch_size=4, augment=NO_AUG, context_slices=1)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 9, HW, HW)
    assert dm.preprocess_config == PreprocessConfig(size=HW, context_slices=1)
    with pytest.raises(ValueError, match="context_slices=4"):
        GliomaDataModule(cache_dir, splits, context_slices=4)
