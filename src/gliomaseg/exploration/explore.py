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
from pathlib import Path

import pandas as pd

from gliomaseg.data.index import INDEX_COLUMNS, index_dataset
from gliomaseg.evaluation.plan import check_output_folder, prepare_output_folder
from gliomaseg.exploration.figures import draw_figures
from gliomaseg.exploration.report import data_csv_table, write_reports
from gliomaseg.exploration.scan import ExploreResult, patient_table, scan_volumes
from gliomaseg.utils import atomic_write

__all__ = ["explore_dataset"]

log = logging.getLogger(__name__)

#: Outputs of an exploration folder (besides ``figures/``), removed before a rewrite.
OUTPUTS = ("explore.md", "explore.html", "patients.csv", "slices.csv", "data_csv.csv")


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
