"""Dataset exploration: what a ``kaggle_3m`` folder holds, as tables, figures, ``explore.md`` and ``explore.html``.

:func:`explore_dataset` indexes the folder with :func:`gliomaseg.data.index.index_dataset` (which
validates every file, detects missing sequences and joins ``data.csv``), reads every slice once
more for what the index does not keep (the head area and intensity histograms), and writes:

- ``patients.csv`` (one row per patient) and ``slices.csv`` (one row per slice);
- ``figures/``: sites, slices per patient, tumour slices, tumour size per slice and per patient
  (pixels and share of the head), tumour position along the volume, missing sequences, intensity
  histograms per channel and site, example slices with their masks, the ``data.csv`` columns;
- ``explore.md`` and a self-contained ``explore.html`` with the tables and figures.

The head is the region of a slice whose FLAIR is above the patient's Otsu threshold (OpenCV,
over the whole volume), holes filled: the slices are not skull-stripped and their background
holds faint noise, so "share of the brain" here means share of this head region.
"""

from __future__ import annotations

import logging
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

from gliomaseg.data.index import INDEX_COLUMNS, index_dataset
from gliomaseg.data.io import read_image
from gliomaseg.evaluation.plan import check_output_folder, prepare_output_folder
from gliomaseg.utils import atomic_write

__all__ = [
    "CHANNELS",
    "ExploreResult",
    "explore_dataset",
    "head_mask",
    "patient_table",
    "read_volume_rows",
    "scan_volumes",
]

log = logging.getLogger(__name__)

#: The three channels of a kaggle_3m slice.
CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
_FLAIR = 1
#: Outputs of an exploration folder (besides ``figures/``), removed before a rewrite.
OUTPUTS = ("explore.md", "explore.html", "patients.csv", "slices.csv", "data_csv.csv")


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


def _headline(slices: pd.DataFrame, patients: pd.DataFrame) -> list[str]:
    n_tumour = int(slices["has_tumour"].sum())
    tumour = slices[slices["has_tumour"]]
    share = tumour["tumour_pixels"] / tumour["head_pixels"].clip(lower=1)
    return [
        f"{len(patients)} patients, {len(slices)} slices from {patients['site'].nunique()} sites",
        f"slices with tumour: {n_tumour} ({100 * n_tumour / max(1, len(slices)):.1f}%); "
        f"patients without tumour: {int((patients['tumour_voxels'] == 0).sum())}",
        f"tumour per tumour slice: median {tumour['tumour_pixels'].median():.0f} pixels, "
        f"{100 * share.median():.1f}% of the head",
        f"patients missing pre-contrast: {int((~patients['has_pre']).sum())}, "
        f"missing post-contrast: {int((~patients['has_post']).sum())}",
    ]


def explore_dataset(
    data_dir: str | Path, out: str | Path = "explore", *, overwrite: bool = False, progress: bool = True
) -> ExploreResult:
    """Explore a ``kaggle_3m`` folder: tables, figures, ``explore.md`` and ``explore.html`` in ``out``.

    Args:
        data_dir: a kaggle_3m folder (or its parent), as for :func:`~gliomaseg.data.index.index_dataset`.
        out: output folder.
        overwrite: replace the outputs of an earlier exploration in a non-empty ``out``.
        progress: progress bars.

    Returns:
        An :class:`ExploreResult`.

    Raises:
        GliomasegError: the folder holds no valid slices, or a bad file (named).
        OutputExistsError: ``out`` is not empty and ``overwrite`` is false.

    Example:
        >>> result = explore_dataset("kaggle_3m", "explore")  # doctest: +SKIP
        >>> result.headline[0]  # doctest: +SKIP
        '90 patients, 3279 slices from 5 sites'
    """
    from gliomaseg.study.explore_figures import draw_figures
    from gliomaseg.study.explore_report import data_csv_table, write_reports

    out = Path(out)
    check_output_folder(out, overwrite)  # before the slow part
    table = index_dataset(data_dir, progress=progress).table
    slices, histograms = scan_volumes(table, progress=progress)
    patients = patient_table(slices)
    prepare_output_folder(out, overwrite, OUTPUTS)
    result = ExploreResult(out, slices, patients, histograms, headline=_headline(slices, patients))
    result.figures = draw_figures(result, out / "figures")
    atomic_write(out / "patients.csv", lambda p: patients.to_csv(p, index=False))
    keep = [c for c in slices.columns if c in INDEX_COLUMNS or c in ("head_pixels", "position")]
    atomic_write(out / "slices.csv", lambda p: slices[keep].to_csv(p, index=False))
    atomic_write(out / "data_csv.csv", lambda p: data_csv_table(patients).to_csv(p, index=False))
    write_reports(result)
    return result
