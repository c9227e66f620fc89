"""The index table: its columns, saving and loading it with types restored, and a text summary.

:func:`gliomaseg.data.index.index_dataset` builds the table by scanning a dataset folder; this module
is everything that happens to the table afterwards.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd

from gliomaseg.data.io import read_image, read_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.utils import atomic_write

__all__ = [
    "CLUSTER_COLUMNS",
    "INDEX_COLUMNS",
    "index_built_from",
    "load_index",
    "read_patient",
    "save_index",
    "summarise_index",
]

#: The genomic cluster variables of the Kaggle ``data.csv`` (joined into the index when present).
CLUSTER_COLUMNS: tuple[str, ...] = (
    "RNASeqCluster",
    "MethylationCluster",
    "miRNACluster",
    "CNCluster",
    "RPPACluster",
    "OncosignCluster",
    "COCCluster",
)

#: The fixed leading columns of an index table; ``data.csv`` columns (if any) follow them.
INDEX_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "patient",
    "site",
    "slice",
    "image_path",
    "mask_path",
    "height",
    "width",
    "tumour_pixels",
    "has_tumour",
    "has_pre",
    "has_post",
    "sequences",
)
_STR_COLUMNS = ("patient_id", "patient", "site", "image_path", "mask_path", "sequences")
_INT_COLUMNS = ("slice", "height", "width", "tumour_pixels")
_BOOL_COLUMNS = ("has_tumour", "has_pre", "has_post")


def save_index(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write an index table atomically as CSV (or Parquet for a ``.parquet`` path, needs pyarrow).

    Args:
        table: a table from :func:`index_dataset`.
        path: target file; its folder is created.

    Returns:
        The written path.

    Raises:
        GliomasegError: a required column is missing, or ``.parquet`` without pyarrow installed.
    """
    path = Path(path)
    _check_columns(table, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    parquet = path.suffix.lower() == ".parquet"
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise GliomasegError(f"{path}: writing Parquet needs pyarrow; install it or use a .csv path") from err
    if parquet:
        return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def _check_columns(table: pd.DataFrame, where: str) -> None:
    missing = [c for c in INDEX_COLUMNS if c not in table.columns]
    if missing:
        raise GliomasegError(
            f"{where}: not an index table, missing column(s) {', '.join(missing)}; re-create it with `gliomaseg index`"
        )


def _to_bool(col: pd.Series, name: str, where: str) -> pd.Series:
    if col.dtype == bool:
        return col
    mapping = {"true": True, "false": False, "1": True, "0": False}
    out = col.astype(str).str.strip().str.lower().map(mapping)
    if out.isna().any():
        bad = col[out.isna()].iloc[0]
        raise GliomasegError(f"{where}: column {name!r} has non-boolean value {bad!r}; re-create the index")
    return out.astype(bool)


def load_index(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an index written by :func:`save_index`, restoring column types.

    Args:
        path: a ``.csv`` (or ``.parquet``) index file.

    Returns:
        The table: string ids and paths, int64 ``slice``/``height``/``width``/``tumour_pixels``,
        bool ``has_tumour``/``has_pre``/``has_post``, other columns as pandas infers them.

    Raises:
        GliomasegError: the file is missing or unreadable, or lacks index columns.
    """
    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"index file {path} not found; create it with `gliomaseg index DATA_DIR`")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype={c: str for c in _STR_COLUMNS})
    except (OSError, ImportError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise GliomasegError(f"{path}: cannot read index ({err}); re-create it with `gliomaseg index`") from err
    _check_columns(table, str(path))
    for c in _INT_COLUMNS:
        if table[c].isna().any():
            raise GliomasegError(f"{path}: column {c!r} has empty values; re-create the index")
        table[c] = table[c].astype(np.int64)
    for c in _BOOL_COLUMNS:
        table[c] = _to_bool(table[c], c, str(path))
    for c in _STR_COLUMNS:
        table[c] = table[c].astype(str)
    return table


def index_built_from(table: pd.DataFrame, data: str | os.PathLike[str]) -> bool:
    """Whether every image of the index lies inside the folder ``data``.

    Compares resolved path components (not string prefixes), so ``/data/lgg`` does not claim an
    index of ``/data/lgg-old``.

    Args:
        table: an index table (``image_path`` column).
        data: the dataset folder it should belong to.

    Returns:
        True when every ``image_path`` is inside ``data``.

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"image_path": ["/data/lgg-old/P/P_1.tif"]})
        >>> index_built_from(table, "/data/lgg"), index_built_from(table, "/data")
        (False, True)
    """
    root = Path(data).expanduser().resolve()
    folders = {Path(p).parent for p in table["image_path"].astype(str)}
    return all(folder.is_relative_to(root) for folder in folders)


def summarise_index(table: pd.DataFrame) -> str:
    """A short, deterministic text summary of an index table.

    Args:
        table: a table from :func:`index_dataset` or :func:`load_index`.

    Returns:
        Multi-line text: patients, slices, slices with tumour (and %), per-site patients and
        slices, and the patients missing pre- or post-contrast.
    """
    _check_columns(table, "summarise_index")
    n_slices = len(table)
    n_tumour = int(table["has_tumour"].sum())
    pct = 100.0 * n_tumour / n_slices if n_slices else 0.0
    patients = table.drop_duplicates("patient_id").sort_values("patient_id")
    lines = [
        f"patients: {len(patients)}",
        f"slices: {n_slices}",
        f"slices with tumour: {n_tumour} ({pct:.1f}%)",
        "sites (patients / slices):",
    ]
    per_site = table.groupby("site", sort=True).agg(patients=("patient_id", "nunique"), slices=("patient_id", "size"))
    for site, row in per_site.iterrows():
        lines.append(f"  {site}: {row['patients']} / {row['slices']}")
    for col, label in (("has_pre", "pre-contrast"), ("has_post", "post-contrast")):
        missing = patients.loc[~patients[col], "patient_id"].tolist()
        names = f": {', '.join(missing)}" if missing else ""
        lines.append(f"missing {label}: {len(missing)} patient(s){names}")
    return "\n".join(lines)


def read_patient(rows: pd.DataFrame, pool: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one patient's slices and masks from its index rows (in the rows' order).

    Args:
        rows: the patient's index rows, sorted by ``slice``.
        pool: an executor to read files in parallel (None: one by one).

    Returns:
        ``S x H x W x 3`` uint8 images and ``S x H x W`` bool masks.

    Raises:
        GliomasegError: an unreadable file (named), or slices of different sizes.
    """
    read = pool.map if pool is not None else map
    images = list(read(read_image, rows["image_path"]))
    masks = list(read(read_mask, rows["mask_path"]))
    shapes = {im.shape[:2] for im in images} | {m.shape for m in masks}
    if len(shapes) != 1:
        raise GliomasegError(
            f"patient {rows['patient_id'].iloc[0]} has slices of different sizes {sorted(shapes)}; "
            "every slice and mask of a patient must have the same height and width"
        )
    return np.stack(images), np.stack(masks).astype(bool)
