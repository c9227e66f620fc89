"""Slice datasets over the preprocessed cache and the LightningDataModule (loaders, tumour-weighted sampling).

Items are read from the cache's memory maps, so DataLoader workers share the page cache instead of
copying arrays; a :class:`~gliomaseg.data.cache.Cache` pickles as its path, so spawned workers reopen
the maps. Loaders fetch a whole batch at once (:meth:`SliceDataset.__getitems__`): one indexed read of
the memory map, one float16 -> float32 conversion and vectorised augmentation, instead of a Python
round trip per slice, which on the 2-core project machine cost more than a tenth of each epoch
(docs/performance.md). Batches come out ``B x C x H x W`` in channels-last memory order, the layout
the convolutions want; ``C`` is 3, or ``3 (2K + 1)`` for a 2.5D model whose slices are stacked with
their ``K`` neighbours on each side (``context_slices``) as they are read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate, get_worker_info

from gliomaseg.data.augment import AugmentConfig, BatchAugment, split_augmentation
from gliomaseg.data.cache import Cache, open_cache
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.data.splits import part_patients
from gliomaseg.errors import GliomasegError

__all__ = ["GliomaDataModule", "SliceBatch", "SliceDataset", "collate_batch"]

logger = logging.getLogger(__name__)


class SliceDataset(Dataset):
    """One cached slice per item.

    Args:
        cache: an opened cache.
        rows: cache rows of this dataset, in item order.
        patient_index: patient id -> index into the owning part's patient list.
        transform: an Albumentations pipeline called as ``transform(image=..., mask=...)``, or ``None``.
        batch_transform: a :class:`~gliomaseg.data.augment.BatchAugment` applied to whole batches
            (before ``transform``), or ``None``.
        context_slices: neighbours on each side stacked with each slice as channels (same patient,
            slice order, edge slices repeated: :meth:`~gliomaseg.data.cache.Cache.context_rows`).
            Augmentation sees the whole stack as one image, so every stacked slice gets the same draw.

    Items are dicts: ``image`` float32 ``C x H x W`` (``C = 3 (2 context_slices + 1)``, the centre
    slice's channels in the middle), ``mask`` float32 ``1 x H x W`` in {0, 1} (the centre slice's),
    ``patient_index`` int, ``row`` int (cache row of the centre slice).

    Raises:
        GliomasegError: a row is out of range or belongs to a patient missing from ``patient_index``.
    """

    def __init__(
        self,
        cache: Cache,
        rows: Sequence[int] | np.ndarray,
        patient_index: dict[str, int],
        transform: A.Compose | None = None,
        batch_transform: BatchAugment | None = None,
        context_slices: int = 0,
    ) -> None:
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= len(cache)):
            raise GliomasegError(f"rows must be in [0, {len(cache)}) for cache {cache.path}")
        self.patient_index = dict(patient_index)
        pids = cache.slices["patient_id"].to_numpy()[self.rows]
        missing = sorted(set(pids) - set(self.patient_index))
        if missing:
            raise GliomasegError(f"patient_index lacks patient(s) {missing[:5]} that own some of the rows")
        self._patients = np.array([self.patient_index[p] for p in pids], dtype=np.int64)
        self.has_tumour = cache.slices["has_tumour"].to_numpy(dtype=bool)[self.rows]
        self.transform = transform
        self.batch_transform = batch_transform
        self.context_slices = int(context_slices)
        self._context = cache.context_rows(self.context_slices)[self.rows] if self.context_slices else None

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.__getitems__([i])[0]
        return {**item, "image": item["image"].contiguous()}

    def __getitems__(self, indices: Sequence[int]) -> SliceBatch:
        """The items at ``indices``, read, converted and augmented together (see :class:`SliceBatch`)."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")  # memory maps read fastest in file order
        masks = np.empty((len(rows), *self.cache.masks.shape[1:]), np.uint8)
        masks[order] = self.cache.masks[rows[order]]
        if self._context is None:
            images = np.empty((len(rows), *self.cache.images.shape[1:]), np.float32)
            images[order] = self.cache.images[rows[order]]
        else:
            images = self._stacked(self._context[idx])
        if self.batch_transform is not None:
            images, masks = self.batch_transform(images, masks)
        if self.transform is not None:
            for k in range(len(rows)):
                out = self.transform(image=images[k], mask=masks[k])
                images[k], masks[k] = out["image"], out["mask"]
        return SliceBatch(
            {
                "image": torch.from_numpy(images).permute(0, 3, 1, 2),
                "mask": torch.from_numpy(masks[:, None].astype(np.float32)),
                "patient_index": torch.from_numpy(self._patients[idx]),
                "row": torch.from_numpy(rows),
            }
        )

    def _stacked(self, context: np.ndarray) -> np.ndarray:
        """``B x H x W x 3 (2K + 1)`` float32 of the cache rows ``context`` (``B x (2K + 1)``), each
        neighbour read once (neighbouring items share most of their slices) and in file order."""
        unique, inverse = np.unique(context, return_inverse=True)
        slices = self.cache.images[unique]
        inverse = inverse.reshape(context.shape)
        b, depth = context.shape
        h, w, c = slices.shape[1:]
        # converted to float32 while written into place: half the time of converting, gathering, then
        # transposing (5 against 10 ms for 16 slices of 128 x 128 with K = 1 here)
        stacked = np.empty((b, h, w, depth, c), np.float32)
        for j in range(depth):
            stacked[:, :, :, j] = slices[inverse[:, j]]
        return stacked.reshape(b, h, w, depth * c)


class SliceBatch(list):
    """The items of one batch (a list of item dicts, as ``Dataset.__getitems__`` returns) that also
    holds them already stacked, so :func:`collate_batch` hands the batch on without copying it.

    A plain ``default_collate`` still works on it (it stacks the items as for any list).
    """

    def __init__(self, stacked: dict[str, torch.Tensor]) -> None:
        n = len(stacked["row"])
        super().__init__(
            {
                "image": stacked["image"][k],
                "mask": stacked["mask"][k],
                "patient_index": int(stacked["patient_index"][k]),
                "row": int(stacked["row"][k]),
            }
            for k in range(n)
        )
        self.stacked = stacked


def collate_batch(batch: Any) -> Any:
    """The stacked tensors of a :class:`SliceBatch` (no copy); anything else through ``default_collate``."""
    return batch.stacked if isinstance(batch, SliceBatch) else default_collate(batch)


def _seed_worker(worker_id: int) -> None:
    """Give every DataLoader worker its own augmentation stream (Compose copies would repeat otherwise)."""
    info = get_worker_info()
    if info is None:
        return
    for name in ("transform", "batch_transform"):
        transform = getattr(info.dataset, name, None)
        if transform is not None and hasattr(transform, "set_random_seed"):
            transform.set_random_seed(int(info.seed % 2**32))


class GliomaDataModule(L.LightningDataModule):
    """Train/val/test slice loaders for one fold of a ``splits.json`` over one cache.

    Args:
        cache_dir: a directory returned by :func:`~gliomaseg.data.cache.build_cache`.
        splits: the splits dict (:func:`~gliomaseg.data.splits.load_splits`).
        fold: fold index.
        batch_size: slices per batch.
        num_workers: DataLoader worker processes.
        augment: training augmentation; ``None`` means the defaults of :class:`AugmentConfig` (pass
            ``AugmentConfig(enabled=False)`` for none).
        tumour_fraction: if set, training draws slices with replacement so that about this fraction
            are tumour slices (epoch length stays the number of training slices).
        seed: seed of the shuffling/sampling generator and of the augmentation pipeline.
        context_slices: neighbours on each side stacked with every slice as channels (2.5D input;
            see :class:`SliceDataset`).

    Raises:
        GliomasegError: bad arguments; in :meth:`setup`, split patients missing from the cache.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        splits: dict[str, Any],
        fold: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: AugmentConfig | None = None,
        tumour_fraction: float | None = None,
        seed: int = 0,
        context_slices: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GliomasegError(f"batch_size={batch_size!r} must be a positive int")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise GliomasegError(f"num_workers={num_workers!r} must be an int >= 0")
        if tumour_fraction is not None and not 0.0 <= float(tumour_fraction) <= 1.0:
            raise GliomasegError(f"tumour_fraction={tumour_fraction!r} must be in [0, 1] (or None for plain shuffling)")
        part_patients(splits, "train", fold)  # validates fold early
        self.cache_dir = Path(cache_dir)
        self.splits = splits
        self.fold = int(fold)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment if augment is not None else AugmentConfig()
        self.tumour_fraction = None if tumour_fraction is None else float(tumour_fraction)
        self.seed = int(seed)
        self.context_slices = PreprocessConfig(context_slices=context_slices).context_slices  # checks the range
        self.cache: Cache | None = None
        self.train_dataset: SliceDataset | None = None
        self.val_dataset: SliceDataset | None = None
        self.test_dataset: SliceDataset | None = None
        self._generator: torch.Generator | None = None

    @property
    def train_patients(self) -> list[str]:
        """Sorted training patients; ``patient_index`` of train items indexes this list."""
        return part_patients(self.splits, "train", self.fold)

    @property
    def val_patients(self) -> list[str]:
        """Sorted validation patients; ``patient_index`` of val items indexes this list."""
        return part_patients(self.splits, "val", self.fold)

    @property
    def test_patients(self) -> list[str]:
        """Sorted test patients (empty without a test part); ``patient_index`` of test items indexes it."""
        return part_patients(self.splits, "test", self.fold)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """Preprocessing settings of the network's input: the cache's, with the neighbours stacked."""
        return dataclasses.replace(
            (self.cache or open_cache(self.cache_dir)).config, context_slices=self.context_slices
        )

    def _dataset(
        self, cache: Cache, patients: list[str], augment: tuple[BatchAugment | None, A.Compose | None] = (None, None)
    ) -> SliceDataset:
        rows = [cache.rows_of(p) for p in patients]
        rows_arr = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        batch_transform, transform = augment
        index = {p: i for i, p in enumerate(patients)}
        return SliceDataset(cache, rows_arr, index, transform, batch_transform, self.context_slices)

    def setup(self, stage: str | None = None) -> None:
        """Open the cache and build the three datasets (idempotent).

        Raises:
            GliomasegError: patients of the splits are not in the cache.
        """
        if self.cache is not None:
            return
        cache = open_cache(self.cache_dir)
        wanted = part_patients(self.splits, "all", self.fold)
        missing = sorted(set(wanted) - set(cache.patients))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise GliomasegError(
                f"{len(missing)} patient(s) of the splits are not in the cache {self.cache_dir}: {shown}. "
                "Build the cache and the splits from the same index."
            )
        self.train_dataset = self._dataset(cache, self.train_patients, split_augmentation(self.augment, seed=self.seed))
        self.val_dataset = self._dataset(cache, self.val_patients)
        self.test_dataset = self._dataset(cache, self.test_patients)
        self.cache = cache

    def _get(self, name: str) -> SliceDataset:
        self.setup()
        dataset = getattr(self, f"{name}_dataset")
        if dataset is None:  # pragma: no cover - setup always fills all three
            raise RuntimeError(f"{name} dataset missing after setup()")
        return dataset

    def _loader(self, dataset: SliceDataset, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_seed_worker if self.num_workers > 0 else None,
            collate_fn=collate_batch,
            **kwargs,
        )

    def _train_sampler(self, dataset: SliceDataset, generator: torch.Generator) -> WeightedRandomSampler:
        frac = float(self.tumour_fraction)  # type: ignore[arg-type]
        tumour = dataset.has_tumour
        n_t, n_n = int(tumour.sum()), int((~tumour).sum())
        if (frac > 0 and n_t == 0) or (frac < 1 and n_n == 0):
            kind = "tumour" if n_t == 0 else "tumour-free"
            raise GliomasegError(
                f"tumour_fraction={frac} needs {kind} slices but the training part of fold {self.fold} "
                "has none; use tumour_fraction=None"
            )
        weights = np.where(tumour, frac / max(n_t, 1), (1.0 - frac) / max(n_n, 1))
        return WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double),
            num_samples=len(dataset),
            replacement=True,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or tumour-fraction weighted) training slices with augmentation."""
        dataset = self._get("train")
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        if self.tumour_fraction is None:
            return self._loader(dataset, shuffle=True, generator=self._generator)
        sampler = self._train_sampler(dataset, self._generator)
        return self._loader(dataset, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        """Validation slices ordered by patient then slice, no augmentation."""
        dataset = self._get("val")
        return self._loader(dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test slices ordered by patient then slice, no augmentation.

        Raises:
            GliomasegError: the splits have no test part.
        """
        dataset = self._get("test")
        if len(dataset) == 0:
            raise GliomasegError("these splits have no test part (test_fraction=0); evaluate on 'val' instead")
        return self._loader(dataset, shuffle=False)
