"""What the slices of an exploration hold: head region, per-slice and per-patient tables, the result type.

The lower half of :mod:`gliomaseg.exploration`: :mod:`~gliomaseg.exploration.explore` (which
orchestrates), :mod:`~gliomaseg.exploration.figures` and :mod:`~gliomaseg.exploration.report` all
import from here and never from each other, so the package has no import circle.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from gliomaseg.data.index import INDEX_COLUMNS
from gliomaseg.data.io import read_image

__all__ = [
    "CHANNELS",
    "ExploreResult",
    "data_csv_columns",
    "head_mask",
    "is_categorical",
    "patient_table",
    "read_volume_rows",
    "scan_volumes",
]

#: The three channels of a kaggle_3m slice.
CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
_FLAIR = 1
#: Above this many distinct values a ``data.csv`` column is a measurement, not a code.
_MAX_CATEGORIES = 12


@dataclass
class ExploreResult:
    """What :func:`explore_dataset` wrote and found.

    Attributes:
        out: the output folder.
        slices: one row per slice (index columns, ``head_pixels``, ``position``).
        patients: one row per patient (see :func:`patient_table`).
        histograms: site -> ``3 x 256`` counts of head pixel intensities per channel.
        figures: ``(caption, path)`` of every figure.
        headline: a few lines that summarise the dataset.
    """

    out: Path
    slices: pd.DataFrame
    patients: pd.DataFrame
    histograms: dict[str, np.ndarray]
    figures: list[tuple[str, Path]] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)


def head_mask(volume: np.ndarray) -> np.ndarray:
    """The head region of a ``S x H x W x 3`` uint8 volume: FLAIR above the volume's Otsu threshold, holes filled.

    Returns:
        ``S x H x W`` bool.
    """
    flair = np.ascontiguousarray(volume[..., _FLAIR])
    threshold, _ = cv2.threshold(flair.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.stack([ndimage.binary_fill_holes(s > threshold) for s in flair])


def read_volume_rows(rows: pd.DataFrame) -> np.ndarray:
    """``S x H x W x 3`` uint8 images of index rows, in row order."""
    return np.stack([read_image(p) for p in rows["image_path"]])


def _scan_volume(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Head pixels per slice and ``3 x 256`` intensity counts inside the head, for one patient."""
    volume = read_volume_rows(rows)
    head = head_mask(volume)
    counts = np.stack([np.bincount(volume[..., c][head], minlength=256) for c in range(3)])
    return head.sum(axis=(1, 2)), counts


def scan_volumes(table: pd.DataFrame, *, progress: bool = False) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Add ``head_pixels`` and ``position`` to a copy of the index table; intensity histograms per site.

    Args:
        table: an index table (one row per slice).
        progress: tqdm bar over patients.

    Returns:
        ``(slices, histograms)``: the table with ``head_pixels`` (pixels of the head region) and
        ``position`` (0 = first slice of the volume, 1 = last), and site -> ``3 x 256`` counts of the
        head's pixel intensities per channel.
    """
    slices = table.sort_values(["patient_id", "slice"]).reset_index(drop=True)
    groups = [rows for _, rows in slices.groupby("patient_id", sort=True)]
    head = np.zeros(len(slices), dtype=np.int64)
    histograms: dict[str, np.ndarray] = {}
    # Decoding TIFFs releases the GIL, so threads overlap the reads (as in index_dataset).
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        scans = pool.map(_scan_volume, groups)
        for rows, (pixels, counts) in tqdm(zip(groups, scans), total=len(groups), disable=not progress, desc="scan"):
            head[rows.index] = pixels
            site = str(rows["site"].iloc[0])
            histograms[site] = histograms.get(site, 0) + counts
    slices["head_pixels"] = head
    rank = slices.groupby("patient_id").cumcount()
    n = slices.groupby("patient_id")["slice"].transform("size")
    slices["position"] = np.where(n > 1, rank / (n - 1).clip(lower=1), 0.5)
    return slices, histograms


def patient_table(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per patient from a scanned slice table (:func:`scan_volumes`).

    Columns: ``patient_id``, ``patient``, ``site``, ``slices``, ``tumour_slices``,
    ``tumour_slice_share``, ``tumour_voxels``, ``head_voxels``, ``tumour_head_share`` (tumour
    voxels / head voxels), ``tumour_position`` (tumour-weighted mean slice position, NaN without
    tumour), ``has_pre``, ``has_post``, ``sequences``, then the ``data.csv`` columns.
    """
    extra = [c for c in slices.columns if c not in INDEX_COLUMNS and c not in ("head_pixels", "position")]
    weighted = slices["position"] * slices["tumour_pixels"]
    grouped = slices.assign(_w=weighted).groupby("patient_id", sort=True)
    out = grouped.agg(
        patient=("patient", "first"),
        site=("site", "first"),
        slices=("slice", "size"),
        tumour_slices=("has_tumour", "sum"),
        tumour_voxels=("tumour_pixels", "sum"),
        head_voxels=("head_pixels", "sum"),
        _w=("_w", "sum"),
        has_pre=("has_pre", "first"),
        has_post=("has_post", "first"),
        sequences=("sequences", "first"),
        **{c: (c, "first") for c in extra},
    ).reset_index()
    out["tumour_slice_share"] = out["tumour_slices"] / out["slices"]
    out["tumour_head_share"] = out["tumour_voxels"] / out["head_voxels"].clip(lower=1)
    out["tumour_position"] = np.where(
        out["tumour_voxels"] > 0, out["_w"] / out["tumour_voxels"].clip(lower=1), math.nan
    )
    first = ["patient_id", "patient", "site", "slices", "tumour_slices", "tumour_slice_share", "tumour_voxels"]
    first += ["head_voxels", "tumour_head_share", "tumour_position", "has_pre", "has_post", "sequences"]
    return out[first + extra]


def data_csv_columns(patients: pd.DataFrame) -> list[str]:
    """The ``data.csv`` columns of a patient table (those after ``sequences``)."""
    columns = list(patients.columns)
    return columns[columns.index("sequences") + 1 :] if "sequences" in columns else []


def is_categorical(values: pd.Series) -> bool:
    """A coded column (few small values, like the cluster numbers), as opposed to a measurement like age."""
    numbers = pd.to_numeric(values.dropna(), errors="coerce")
    if numbers.isna().any():  # text
        return values.nunique() <= _MAX_CATEGORIES
    return values.nunique() <= _MAX_CATEGORIES and (numbers.empty or numbers.max() <= _MAX_CATEGORIES)
