"""Evaluation figures (matplotlib, Agg backend): overlays, per-patient GIFs, Dice distribution, learning curves.

Colours everywhere: the FLAIR channel (channel 1 of a kaggle_3m slice) in grey, the ground truth
outlined in green, the prediction outlined in red (yellow where both outlines coincide).
Figures are written atomically; nothing is printed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are files, there is no display.

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import ndimage  # noqa: E402

from gliomaseg.errors import GliomasegError
from gliomaseg.utils import atomic_write  # noqa: E402

__all__ = [
    "FLAIR",
    "outline",
    "overlay_frames",
    "plot_dice_distribution",
    "plot_learning_curves",
    "plot_patient_overlays",
    "save_figure",
    "save_gif",
    "select_slices",
]

#: Channel of a kaggle_3m slice that shows the tumour best (pre-contrast, FLAIR, post-contrast).
FLAIR = 1
_TRUTH_RGB = np.array([0, 255, 0], dtype=np.uint8)
_PRED_RGB = np.array([255, 0, 0], dtype=np.uint8)
_BOTH_RGB = np.array([255, 255, 0], dtype=np.uint8)
_TRUTH_COLOUR, _PRED_COLOUR = "lime", "red"
_DPI = 100


def _check_stack(images: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise GliomasegError(f"images must be S x H x W x 3 uint8, got shape {images.shape} dtype {images.dtype}")
    if truth.shape != images.shape[:3] or pred.shape != images.shape[:3]:
        raise GliomasegError(f"truth {truth.shape} and pred {pred.shape} must both be S x H x W = {images.shape[:3]}")


def outline(mask: np.ndarray) -> np.ndarray:
    """In-plane outline of a mask: foreground pixels with a 4-neighbour in the background.

    Args:
        mask: ``H x W`` or ``S x H x W`` (each slice outlined on its own); bool or 0/1.

    Returns:
        Bool array of the same shape.
    """
    m = np.asarray(mask).astype(bool)
    cross = ndimage.generate_binary_structure(2, 1)
    structure = cross if m.ndim == 2 else cross[None]
    # border_value=0 makes a mask touching the image edge get an outline there too.
    return m & ~ndimage.binary_erosion(m, structure=structure, border_value=0)


def _block_reduce(x: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Downscale axes 1 and 2 of ``S x H x W (x C)`` by an integer factor (mean or any)."""
    if factor == 1:
        return x
    s, h, w = x.shape[:3]
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    pad = [(0, 0), (0, hp - h), (0, wp - w)] + [(0, 0)] * (x.ndim - 3)
    x = np.pad(x, pad, mode="edge" if how == "mean" else "constant")
    shaped = x.reshape(s, hp // factor, factor, wp // factor, factor, *x.shape[3:])
    if how == "any":
        return shaped.any(axis=(2, 4))
    return shaped.mean(axis=(2, 4))


def overlay_frames(
    images: np.ndarray, truth: np.ndarray, pred: np.ndarray, *, max_size: int | None = 128
) -> np.ndarray:
    """RGB frames: FLAIR in grey with green truth and red prediction outlines.

    Outlines are drawn at full resolution and then shrunk with a logical "any", so they stay
    visible (one pixel wide) after downscaling.

    Args:
        images: ``S x H x W x 3`` uint8 slices.
        truth: ``S x H x W`` ground-truth mask (bool or 0/1).
        pred: ``S x H x W`` predicted mask.
        max_size: downscale by an integer factor until the longer side is at most this; ``None``
            keeps the input size.

    Returns:
        ``S x h x w x 3`` uint8.

    Raises:
        GliomasegError: mismatched shapes or non-uint8 images.
    """
    truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    _check_stack(images, truth, pred)
    factor = 1 if max_size is None else max(1, math.ceil(max(images.shape[1:3]) / max_size))
    grey = _block_reduce(images[..., FLAIR].astype(np.float32), factor, "mean")
    frames = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    t = _block_reduce(outline(truth), factor, "any")
    p = _block_reduce(outline(pred), factor, "any")
    frames[t] = _TRUTH_RGB
    frames[p] = _PRED_RGB
    frames[t & p] = _BOTH_RGB
    return frames


def save_gif(
    path: str | Path,
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    max_size: int = 128,
    fps: float = 6.0,
) -> Path:
    """Write an animated GIF through a patient's slices (see :func:`overlay_frames`).

    Args:
        path: the ``.gif`` file.
        images: ``S x H x W x 3`` uint8 slices in order.
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        max_size: longest side of the frames in pixels (keeps the file small).
        fps: frames per second.

    Returns:
        ``path``.
    """
    import imageio.v3 as iio

    frames = overlay_frames(images, truth, pred, max_size=max_size)
    duration = int(round(1000 / fps))
    return atomic_write(path, lambda p: iio.imwrite(p, frames, extension=".gif", duration=duration, loop=0))


def select_slices(truth: np.ndarray, pred: np.ndarray, n: int = 6) -> list[int]:
    """Slices to show for a patient: spread over the tumour, then most predicted, then evenly spaced.

    With more tumour slices than ``n``, the picks are evenly spaced through the tumour's slices
    (centred, so not its thin ends) and always include the slice with the most tumour;
    adjacent slices would mostly repeat each other.

    Args:
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        n: how many slices (fewer if the patient has fewer).

    Returns:
        Sorted slice positions (0-based along S).
    """
    s = truth.shape[0]
    n = min(n, s)
    t = np.asarray(truth).reshape(s, -1).sum(axis=1)
    p = np.asarray(pred).reshape(s, -1).sum(axis=1)
    tumour = np.flatnonzero(t > 0)
    if len(tumour) > n:
        picks = tumour[((np.arange(n) + 0.5) * len(tumour) / n).astype(int)]
        biggest = int(np.argmax(t))
        if biggest not in picks:
            picks[np.argmin(np.abs(picks - biggest))] = biggest
        chosen = [int(i) for i in picks]
    else:
        chosen = [int(i) for i in tumour]
    # False positives on tumour-free slices are worth showing too.
    for i in np.argsort(-p, kind="stable"):
        if len(chosen) >= n or p[i] == 0:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    for i in np.linspace(0, s - 1, n).round().astype(int):
        if len(chosen) >= n:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return sorted(chosen)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically and close it (every report's figures go through here)."""
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=_DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _legend_handles() -> list[Line2D]:
    return [
        Line2D([0], [0], color=_TRUTH_COLOUR, lw=2.4, label="ground truth"),
        Line2D([0], [0], color=_PRED_COLOUR, lw=1.1, label="prediction"),
    ]


def plot_patient_overlays(
    path: str | Path,
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    title: str,
    slice_numbers: Sequence[int] | None = None,
    n: int = 6,
) -> Path:
    """A montage of one patient's most informative slices (see :func:`select_slices`).

    Args:
        path: the ``.png`` file.
        images: ``S x H x W x 3`` uint8 slices.
        truth: ``S x H x W`` ground truth.
        pred: ``S x H x W`` prediction.
        title: figure title (e.g. patient id and volume Dice).
        slice_numbers: the dataset's slice numbers for the panel titles (default 1..S).
        n: number of slices shown.

    Returns:
        ``path``.
    """
    truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
    _check_stack(images, truth, pred)
    numbers = list(slice_numbers) if slice_numbers is not None else list(range(1, len(images) + 1))
    picks = select_slices(truth, pred, n)
    cols = min(len(picks), 3)
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows + 0.7), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        ax.imshow(images[i, ..., FLAIR], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if truth[i].any():
            # Thicker truth under a thinner prediction keeps both visible where they coincide.
            ax.contour(truth[i], levels=[0.5], colors=_TRUTH_COLOUR, linewidths=2.4)
        if pred[i].any():
            ax.contour(pred[i], levels=[0.5], colors=_PRED_COLOUR, linewidths=1.1)
        inter = int(np.count_nonzero(truth[i] & pred[i]))
        total = int(truth[i].sum() + pred[i].sum())
        dice = f"Dice {2 * inter / total:.2f}" if truth[i].any() else ("FP" if pred[i].any() else "empty")
        ax.set_title(f"slice {numbers[i]}: {dice}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_dice_distribution(path: str | Path, dice: Sequence[float] | np.ndarray | pd.Series) -> Path:
    """Histogram and box/strip plot of per-patient volume Dice (NaN, i.e. no tumour, left out).

    Args:
        path: the ``.png`` file.
        dice: one value per patient.

    Returns:
        ``path``.
    """
    values = np.asarray(dice, dtype=np.float64)
    n_nan = int(np.isnan(values).sum())
    values = values[~np.isnan(values)]
    fig, (ax_h, ax_b) = plt.subplots(
        1, 2, figsize=(8.5, 3.4), gridspec_kw={"width_ratios": [2.2, 1]}, constrained_layout=True
    )
    ax_h.hist(values, bins=np.linspace(0, 1, 21), color="#4477aa", edgecolor="white")
    ax_h.set_xlim(0, 1)
    ax_h.set_xlabel("volume Dice per patient")
    ax_h.set_ylabel("patients")
    ax_h.yaxis.set_major_locator(MaxNLocator(integer=True))
    if values.size:
        mean, median = float(values.mean()), float(np.median(values))
        ax_h.axvline(mean, color="black", lw=1.2, label=f"mean {mean:.3f}")
        ax_h.axvline(median, color="black", ls="--", lw=1.2, label=f"median {median:.3f}")
        ax_h.legend(fontsize=8, loc="upper left")
        ax_b.boxplot(values, widths=0.5, showfliers=False)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, values.size)
        ax_b.scatter(1 + jitter, values, s=14, color="#4477aa", alpha=0.8, zorder=3)
    ax_b.set_ylim(-0.02, 1.02)
    ax_b.set_xticks([1], [f"{values.size} patients"])
    ax_b.set_ylabel("volume Dice")
    note = f" ({n_nan} without tumour left out)" if n_nan else ""
    fig.suptitle(f"Per-patient Dice{note}", fontsize=11)
    return save_figure(fig, path)


def plot_learning_curves(path: str | Path, log: pd.DataFrame, *, best_epoch: int | None = None) -> Path | None:
    """Train/val loss and validation per-patient Dice against epoch from the run's CSV log.

    Args:
        path: the ``.png`` file.
        log: the run's log, from :func:`gliomaseg.training.read_training_log`.
        best_epoch: epoch of the evaluated checkpoint, marked on the plot.

    Returns:
        ``path``, or ``None`` when the log has no per-epoch values.
    """
    if log.empty or "epoch" not in log.columns:
        return None

    def per_epoch(column: str) -> pd.Series | None:
        if column not in log.columns:
            return None
        s = log[["epoch", column]].dropna().groupby("epoch")[column].last()
        return s if len(s) else None

    series = {
        "train loss": per_epoch("train/loss_epoch"),
        "val loss": per_epoch("val/loss"),
        "val Dice (per patient)": per_epoch("val/dice_patient"),
    }
    if all(s is None for s in series.values()):
        return None
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for name, colour in (("train loss", "#4477aa"), ("val loss", "#ee6677")):
        s = series[name]
        if s is not None:
            ax_l.plot(s.index, s.to_numpy(), marker="o", ms=3, color=colour, label=name)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.legend(fontsize=8)
    dice = series["val Dice (per patient)"]
    if dice is not None:
        ax_d.plot(dice.index, dice.to_numpy(), marker="o", ms=3, color="#228833", label="val Dice (per patient)")
    if best_epoch is not None:
        for ax in (ax_l, ax_d):
            ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        ax_d.plot([], [], color="grey", ls="--", label=f"checkpoint (epoch {best_epoch})")
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("Dice")
    ax_d.set_ylim(0, 1)
    ax_d.legend(fontsize=8, loc="lower right")
    fig.suptitle("Learning curves (validation at the training resolution)", fontsize=11)
    return save_figure(fig, path)
