"""Data stage: index, patient-level splits, normalisation, slice cache, augmentation, datasets, phantoms.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "IndexResult": "gliomaseg.data.index",
    "index_dataset": "gliomaseg.data.index",
    "CLUSTER_COLUMNS": "gliomaseg.data.index_table",
    "INDEX_COLUMNS": "gliomaseg.data.index_table",
    "index_built_from": "gliomaseg.data.index_table",
    "load_index": "gliomaseg.data.index_table",
    "read_patient": "gliomaseg.data.index_table",
    "save_index": "gliomaseg.data.index_table",
    "summarise_index": "gliomaseg.data.index_table",
    "PARTS": "gliomaseg.data.splits",
    "SPLITS_FORMAT": "gliomaseg.data.splits",
    "load_splits": "gliomaseg.data.splits",
    "make_splits": "gliomaseg.data.splits",
    "part_patients": "gliomaseg.data.splits",
    "save_splits": "gliomaseg.data.splits",
    "split_id": "gliomaseg.data.splits",
    "MIN_SIZE": "gliomaseg.data.normalise",
    "NORMALISATIONS": "gliomaseg.data.normalise",
    "SIZE_MULTIPLE": "gliomaseg.data.normalise",
    "check_size": "gliomaseg.data.normalise",
    "PreprocessConfig": "gliomaseg.data.normalise",
    "normalise_volume": "gliomaseg.data.normalise",
    "preprocess_volume": "gliomaseg.data.normalise",
    "resize_volume": "gliomaseg.data.normalise",
    "CACHE_FORMAT": "gliomaseg.data.cache",
    "Cache": "gliomaseg.data.cache",
    "build_cache": "gliomaseg.data.cache",
    "cache_key": "gliomaseg.data.cache",
    "open_cache": "gliomaseg.data.cache",
    "AUGMENT_PRESETS": "gliomaseg.data.augment",
    "AugmentConfig": "gliomaseg.data.augment",
    "BatchAugment": "gliomaseg.data.augment",
    "augment_config": "gliomaseg.data.augment",
    "build_augmentation": "gliomaseg.data.augment",
    "split_augmentation": "gliomaseg.data.augment",
    "GliomaDataModule": "gliomaseg.data.datamodule",
    "SliceBatch": "gliomaseg.data.datamodule",
    "SliceDataset": "gliomaseg.data.datamodule",
    "collate_batch": "gliomaseg.data.datamodule",
    "DATA_CSV_COLUMNS": "gliomaseg.data.phantoms",
    "PHANTOM_SITES": "gliomaseg.data.phantoms",
    "synthesise_dataset": "gliomaseg.data.phantoms",
    "synthesise_volume": "gliomaseg.data.phantoms",
    "IMAGE_SUFFIXES": "gliomaseg.data.io",
    "LOSSLESS_SUFFIXES": "gliomaseg.data.io",
    "mask_suffix": "gliomaseg.data.io",
    "read_image": "gliomaseg.data.io",
    "read_image_any": "gliomaseg.data.io",
    "read_mask": "gliomaseg.data.io",
    "write_image": "gliomaseg.data.io",
    "write_mask": "gliomaseg.data.io",
    "DownloadError": "gliomaseg.data.download",
    "KAGGLE_DATASET": "gliomaseg.data.download",
    "KAGGLE_URL": "gliomaseg.data.download",
    "download_dataset": "gliomaseg.data.download",
    "find_kaggle_credentials": "gliomaseg.data.download",
    "Workspace": "gliomaseg.data.workspace",
    "ensure_index": "gliomaseg.data.workspace",
    "ensure_splits": "gliomaseg.data.workspace",
    "prepare": "gliomaseg.data.workspace",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.data.augment import (
        AUGMENT_PRESETS,
        AugmentConfig,
        BatchAugment,
        augment_config,
        build_augmentation,
        split_augmentation,
    )
    from gliomaseg.data.cache import CACHE_FORMAT, Cache, build_cache, cache_key, open_cache
    from gliomaseg.data.datamodule import GliomaDataModule, SliceBatch, SliceDataset, collate_batch
    from gliomaseg.data.download import (
        KAGGLE_DATASET,
        KAGGLE_URL,
        DownloadError,
        download_dataset,
        find_kaggle_credentials,
    )
    from gliomaseg.data.index import IndexResult, index_dataset
    from gliomaseg.data.index_table import (
        CLUSTER_COLUMNS,
        INDEX_COLUMNS,
        index_built_from,
        load_index,
        read_patient,
        save_index,
        summarise_index,
    )
    from gliomaseg.data.io import (
        IMAGE_SUFFIXES,
        LOSSLESS_SUFFIXES,
        mask_suffix,
        read_image,
        read_image_any,
        read_mask,
        write_image,
        write_mask,
    )
    from gliomaseg.data.normalise import (
        MIN_SIZE,
        NORMALISATIONS,
        SIZE_MULTIPLE,
        PreprocessConfig,
        check_size,
        normalise_volume,
        preprocess_volume,
        resize_volume,
    )
    from gliomaseg.data.phantoms import DATA_CSV_COLUMNS, PHANTOM_SITES, synthesise_dataset, synthesise_volume
    from gliomaseg.data.splits import (
        PARTS,
        SPLITS_FORMAT,
        load_splits,
        make_splits,
        part_patients,
        save_splits,
        split_id,
    )
    from gliomaseg.data.workspace import Workspace, ensure_index, ensure_splits, prepare
