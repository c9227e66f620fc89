"""Data layer: indexing, splits, preprocessing cache, datasets, phantoms, download."""

from __future__ import annotations

from gliomaseg.data.index import IndexResult, index_dataset, load_index, save_index, summarise_index
from gliomaseg.data.io import read_image, read_image_any, read_mask, write_image, write_mask
from gliomaseg.data.phantoms import synthesise_dataset
from gliomaseg.data.preprocess import PreprocessConfig, build_cache, open_cache, preprocess_volume
from gliomaseg.data.splits import load_splits, make_splits, part_patients, save_splits, split_id

__all__ = [
    "IndexResult",
    "PreprocessConfig",
    "build_cache",
    "index_dataset",
    "load_index",
    "load_splits",
    "make_splits",
    "open_cache",
    "part_patients",
    "preprocess_volume",
    "read_image",
    "read_image_any",
    "read_mask",
    "save_index",
    "save_splits",
    "split_id",
    "summarise_index",
    "synthesise_dataset",
    "write_image",
    "write_mask",
]
