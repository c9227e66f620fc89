"""The figures of :func:`gliomaseg.exploration.explore.explore_dataset` (matplotlib, Agg; small PNGs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from gliomaseg.evaluation.figures import plt, save_figure
from gliomaseg.exploration.scan import (
    CHANNELS,
    ExploreResult,
    data_csv_columns,
    head_mask,
    is_categorical,
    read_volume_rows,
)

__all__ = ["draw_figures"]

_BLUE, _RED, _GREEN, _GREY = "#4477aa", "#ee6677", "#228833", "#bbbbbb"
_SITE_COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")


def _sites(path: Path, patients: pd.DataFrame) -> Path:
    per_site = patients.groupby("site").agg(patients=("patient_id", "size"), slices=("slices", "sum"))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), constrained_layout=True)
    for ax, column in zip(axes, ("patients", "slices")):
        bars = ax.bar(per_site.index, per_site[column], color=_BLUE)
        ax.bar_label(bars, fontsize=8)
        ax.set_ylabel(column)
        ax.set_xlabel("site (TCGA_<site>_...)")
    fig.suptitle("Patients and slices per acquisition site", fontsize=11)
    return save_figure(fig, path)


def _per_patient(path: Path, patients: pd.DataFrame) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), constrained_layout=True)
    axes[0].hist(patients["slices"], bins=20, color=_BLUE, edgecolor="white")
    axes[0].set_xlabel("slices per patient")
    axes[0].set_ylabel("patients")
    axes[1].hist(100 * patients["tumour_slice_share"], bins=np.linspace(0, 100, 21), color=_RED, edgecolor="white")
    axes[1].set_xlabel("slices with tumour (% of the patient's slices)")
    axes[1].set_ylabel("patients")
    for ax in axes:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Slices per patient and share of slices with tumour", fontsize=11)
    return save_figure(fig, path)


def _tumour_size(path: Path, slices: pd.DataFrame, patients: pd.DataFrame) -> Path:
    tumour = slices[slices["has_tumour"]]
    with_tumour = patients[patients["tumour_voxels"] > 0]
    panels = [
        (tumour["tumour_pixels"], "tumour pixels per tumour slice", "slices"),
        (100 * tumour["tumour_pixels"] / tumour["head_pixels"].clip(lower=1), "% of the slice's head area", "slices"),
        (with_tumour["tumour_voxels"], "tumour voxels per patient", "patients"),
        (100 * with_tumour["tumour_head_share"], "% of the patient's head volume", "patients"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(8, 5.5), constrained_layout=True)
    for ax, (values, xlabel, ylabel) in zip(axes.flat, panels):
        ax.hist(values, bins=30, color=_BLUE if ylabel == "slices" else _RED, edgecolor="white")
        median = values.median()
        ax.axvline(
            median,
            color="black",
            ls="--",
            lw=1,
            label=f"median {median:.0f}" if median >= 100 else f"median {median:.2f}",
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle("Tumour size per slice (top) and per patient (bottom)", fontsize=11)
    return save_figure(fig, path)


def _position(path: Path, slices: pd.DataFrame, patients: pd.DataFrame) -> Path:
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(slices["position"], bins) - 1, 0, 9)
    share = slices.groupby(which)["has_tumour"].mean().reindex(range(10), fill_value=0)
    pixels = slices.groupby(which)["tumour_pixels"].sum().reindex(range(10), fill_value=0)
    centres = (bins[:-1] + bins[1:]) / 2
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), constrained_layout=True)
    axes[0].bar(centres, 100 * share.to_numpy(), width=0.09, color=_BLUE, label="slices with tumour")
    axes[0].set_ylabel("slices with tumour (%)")
    twin = axes[0].twinx()
    twin.plot(centres, 100 * pixels.to_numpy() / max(1, pixels.sum()), color=_RED, marker="o", ms=3)
    twin.set_ylabel("share of all tumour pixels (%)", color=_RED)
    axes[0].set_xlabel("slice position in the volume (0 = first, 1 = last)")
    axes[1].hist(patients["tumour_position"].dropna(), bins=bins, color=_RED, edgecolor="white")
    axes[1].set_xlabel("tumour centre (tumour-weighted mean position)")
    axes[1].set_ylabel("patients")
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Where the tumour lies along the volume", fontsize=11)
    return save_figure(fig, path)


def _missing(path: Path, patients: pd.DataFrame) -> Path:
    per_site = patients.groupby("site").agg(
        pre=("has_pre", lambda s: int((~s).sum())), post=("has_post", lambda s: int((~s).sum()))
    )
    x = np.arange(len(per_site))
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    for offset, column, colour in ((-0.2, "pre", _BLUE), (0.2, "post", _RED)):
        bars = ax.bar(x + offset, per_site[column], width=0.4, color=colour, label=f"{column}-contrast missing")
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, per_site.index)
    ax.set_xlabel("site")
    ax.set_ylabel("patients")
    ax.legend(fontsize=8)
    ax.set_title("Missing sequences (a channel that copies FLAIR on every slice)", fontsize=10)
    return save_figure(fig, path)


def _intensities(path: Path, histograms: dict[str, np.ndarray]) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True, constrained_layout=True)
    levels = np.arange(256)
    for i, (site, counts) in enumerate(sorted(histograms.items())):
        for c, ax in enumerate(axes):
            density = counts[c] / max(1, counts[c].sum())
            ax.plot(levels, density, lw=1, color=_SITE_COLOURS[i % len(_SITE_COLOURS)], label=site)
    for c, ax in enumerate(axes):
        ax.set_title(CHANNELS[c], fontsize=10)
        ax.set_xlabel("intensity (uint8)")
    axes[0].set_ylabel("share of head pixels")
    axes[-1].legend(fontsize=8, title="site")
    fig.suptitle("Intensity histograms inside the head, per channel and site", fontsize=11)
    return save_figure(fig, path)


def _example_patients(patients: pd.DataFrame, n: int) -> list[str]:
    """Patients from the smallest to the largest tumour, evenly spaced (deterministic)."""
    ranked = patients[patients["tumour_voxels"] > 0].sort_values(["tumour_voxels", "patient_id"])
    if ranked.empty:
        ranked = patients.sort_values("patient_id")
    picks = np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))
    return ranked["patient_id"].iloc[picks].tolist()


def _examples(path: Path, slices: pd.DataFrame, patients: pd.DataFrame, n: int = 8) -> Path:
    from gliomaseg.data.io import read_mask

    ids = _example_patients(patients, n)
    cols = min(4, len(ids))
    rows = math.ceil(len(ids) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pid in zip(axes.flat, ids):
        rows_p = slices[slices["patient_id"] == pid]
        i = int(np.argmax(rows_p["tumour_pixels"].to_numpy()))
        volume = read_volume_rows(rows_p)
        head = head_mask(volume)[i]
        mask = read_mask(rows_p["mask_path"].iloc[i])
        ax.imshow(volume[i, ..., 1], cmap="gray", vmin=0, vmax=255)
        ax.contour(head, levels=[0.5], colors="cyan", linewidths=0.6)
        if mask.any():
            ax.contour(mask, levels=[0.5], colors="lime", linewidths=1.2)
        row = rows_p.iloc[i]
        ax.set_title(f"{row['patient']} s{row['slice']}\n{row['tumour_pixels']} px", fontsize=7)
    fig.suptitle(
        "Largest tumour slice of patients from small to large tumours (FLAIR; green: mask, cyan: head)", fontsize=9
    )
    return save_figure(fig, path)


def _data_csv(path: Path, patients: pd.DataFrame, columns: list[str]) -> Path:
    cols = 4
    rows = math.ceil(len(columns) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.1 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for ax, column in zip(axes.flat, columns):
        ax.axis("on")
        values = patients[column]
        n_missing = int(values.isna().sum())
        if is_categorical(values):
            counts = values.dropna().astype(str).str.replace(r"\.0$", "", regex=True).value_counts().sort_index()
            labels, heights = [*counts.index, "NA"], [*counts.to_numpy(), n_missing]
            ax.bar(labels, heights, color=[_BLUE] * len(counts) + [_GREY])
        else:
            ax.hist(pd.to_numeric(values, errors="coerce").dropna(), bins=15, color=_BLUE, edgecolor="white")
            ax.set_xlabel(f"NA: {n_missing}", fontsize=7)
        ax.set_title(column, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("data.csv: patients per value (grey: missing)", fontsize=10)
    return save_figure(fig, path)


def draw_figures(result: ExploreResult, fig_dir: Path) -> list[tuple[str, Path]]:
    """Draw every exploration figure into ``fig_dir``; returns ``(caption, path)`` in report order."""
    slices, patients = result.slices, result.patients
    out = [
        ("Patients and slices per acquisition site", _sites(fig_dir / "sites.png", patients)),
        (
            "Slices per patient and share of slices with tumour",
            _per_patient(fig_dir / "slices_per_patient.png", patients),
        ),
        ("Tumour size per slice and per patient", _tumour_size(fig_dir / "tumour_size.png", slices, patients)),
        ("Where the tumour lies along the volume", _position(fig_dir / "tumour_position.png", slices, patients)),
        ("Missing sequences per site", _missing(fig_dir / "missing_sequences.png", patients)),
        ("Intensity histograms per channel and site", _intensities(fig_dir / "intensities.png", result.histograms)),
        ("Example slices with their masks", _examples(fig_dir / "examples.png", slices, patients)),
    ]
    columns = data_csv_columns(patients)
    if columns:
        out.append(
            ("data.csv: patients per value of each column", _data_csv(fig_dir / "data_csv.png", patients, columns))
        )
    return out
