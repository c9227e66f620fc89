"""The files a run builds on, created once and reused: ``index.csv``, ``splits.json``, the cache.

Each stage also has its own command (``gliomaseg index``, ``split``, ``cache``); training,
evaluation and the study call :func:`prepare` so that a missing stage is built with defaults
and an existing one is reused as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.data.cache import build_cache
from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import index_built_from, load_index, save_index
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.data.splits import load_splits, make_splits, save_splits
from gliomaseg.errors import GliomasegError

__all__ = ["Workspace", "ensure_index", "ensure_splits", "prepare"]

log = logging.getLogger(__name__)


@dataclass
class Workspace:
    """What :func:`prepare` returns."""

    table: pd.DataFrame
    splits: dict[str, Any]
    cache_dir: Path
    preprocess: PreprocessConfig


def ensure_index(data: str | Path | None, index_path: Path, *, progress: bool = True) -> pd.DataFrame:
    """Load ``index_path`` if it exists (and matches ``data``), else index ``data`` and save it.

    Raises:
        GliomasegError: neither an index nor a data folder is given, or the saved index was built
            from another folder (the message says which, and how to rebuild).
    """
    if index_path.is_file():
        table = load_index(index_path)
        if data is not None and not index_built_from(table, data):
            raise GliomasegError(
                f"{index_path} was built from another folder than {Path(data).resolve()}; "
                f"delete it, or pass --workdir/--index to use a separate one"
            )
        return table
    if data is None:
        raise GliomasegError(f"no index at {index_path}: pass --data DIR (a kaggle_3m folder) to build it")
    result = index_dataset(data, progress=progress)
    save_index(result.table, index_path)
    log.info("indexed %s -> %s", data, index_path)
    return result.table


def ensure_splits(table: pd.DataFrame, splits_path: Path, **split_kwargs: Any) -> dict[str, Any]:
    """Load ``splits_path`` if it exists, else make default splits from ``table`` and save them.

    Raises:
        GliomasegError: the saved splits name patients that the index does not have.
    """
    if splits_path.is_file():
        splits = load_splits(splits_path)
        known = set(table["patient_id"])
        listed = set(splits["test"]).union(*({*f["train"], *f["val"]} for f in splits["folds"]))
        unknown = sorted(listed - known)
        if unknown:
            raise GliomasegError(
                f"{splits_path} lists {len(unknown)} patients that the index lacks (e.g. {unknown[:3]}); "
                "it belongs to another dataset: pass --splits or --workdir for this one"
            )
        return splits
    splits = make_splits(table, **split_kwargs)
    save_splits(splits, splits_path)
    log.info("wrote %s", splits_path)
    return splits


def prepare(
    *,
    data: str | Path | None,
    workdir: str | Path,
    preprocess: PreprocessConfig,
    index_path: Path | None = None,
    splits_path: Path | None = None,
    progress: bool = True,
) -> Workspace:
    """Index, split and cache as needed; reuse whatever already exists."""
    workdir = Path(workdir)
    table = ensure_index(data, index_path or workdir / "index.csv", progress=progress)
    splits = ensure_splits(table, splits_path or workdir / "splits.json")
    cache_dir = build_cache(table, workdir / "cache", preprocess, progress=progress)
    return Workspace(table=table, splits=splits, cache_dir=Path(cache_dir), preprocess=preprocess)
