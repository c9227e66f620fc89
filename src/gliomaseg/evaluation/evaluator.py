"""Evaluate a model file on a split: metrics at the data's own resolution, tables, figures, a report.

For every patient of the chosen split the slices are read at their own size (256 x 256 for
kaggle_3m), segmented with :meth:`gliomaseg.inference.Segmenter.predict_proba` (which resizes the
probabilities back to that size), post-processed as configured (threshold, small 3D components,
largest 3D component; flip TTA at prediction time) and compared with the ground truth per slice
and per patient volume with :mod:`gliomaseg.evaluation.metrics` and its empty-case convention.

Outputs (in ``out``, by default ``<checkpoint folder>/eval_<split>/``):

- ``summary.json``: settings (checkpoint, model, preprocessing, post-processing, split and its id
  checked against the checkpoint's), counts, time, aggregates per metric (mean, median, std and a
  bootstrap 95% CI) over patient volumes and over tumour slices, empty-case counts, warnings and
  one record per patient. NaN is written as ``null``.
- ``per_patient.csv`` (one row per patient), ``per_slice.csv`` (one row per slice).
- ``figures/``: overlays of the best, median and worst patients (and chosen ones), the Dice
  distribution, learning curves when the checkpoint sits in its run folder, and ``gifs/`` with one
  animation per patient.
- ``report.html``: everything above in one self-contained file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gliomaseg import __version__
from gliomaseg.data.index import index_dataset, load_index
from gliomaseg.data.io import read_image, read_mask
from gliomaseg.data.splits import load_splits, part_patients, split_id
from gliomaseg.evaluation.metrics import binary_metrics, dice_from_counts, slice_metrics, summarise_table
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume
from gliomaseg.inference.segmenter import Segmenter
from gliomaseg.utils import atomic_write, atomic_write_text

__all__ = ["EVAL_FORMAT", "SPLITS", "evaluate"]

log = logging.getLogger(__name__)

EVAL_FORMAT = "gliomaseg-eval/1"
SPLITS = ("test", "val", "train", "all")
_OUTPUTS = ("summary.json", "per_patient.csv", "per_slice.csv", "report.html")
_READ_WORKERS = 2


# ----------------------------------------------------------------------------------------------------
# inputs


def _config_path(cfg: dict[str, Any], key: str, default_name: str) -> Path:
    """Path of the training run's index/splits: the explicit setting, else ``<workdir>/<name>``."""
    explicit = cfg.get(key)
    return Path(explicit) if explicit else Path(cfg.get("workdir") or ".") / default_name


def _built_from(table: pd.DataFrame, data: str | Path) -> bool:
    root = str(Path(data).expanduser().resolve())
    return bool(table["image_path"].astype(str).str.startswith(root).all())


def _resolve_index(
    data: str | Path | None, index: str | Path | None, cfg: dict[str, Any], progress: bool
) -> tuple[pd.DataFrame, str]:
    """The index table and where it came from: ``index``, else the run's, else built from ``data``."""
    if index is not None:
        table = load_index(index)
        if data is not None and not _built_from(table, data):
            raise ValueError(
                f"index {index} was built from another folder than {data}; pass only one of them, "
                "or an index of that folder"
            )
        return table, str(Path(index).resolve())
    run_index = _config_path(cfg, "index", "index.csv")
    if run_index.is_file():
        table = load_index(run_index)
        if data is None or _built_from(table, data):
            return table, str(run_index.resolve())
        log.info("the run's index %s is of another folder than %s: indexing %s", run_index, data, data)
    if data is None:
        raise ValueError(
            f"no index found (the checkpoint's run used {run_index}, which does not exist here): "
            "pass --data DIR (a kaggle_3m folder) or --index FILE"
        )
    table = index_dataset(data, progress=progress).table
    return table, f"built from {Path(data).resolve()}"


def _fold_of(meta: dict[str, Any], fold: int | None) -> int:
    if fold is not None:
        return int(fold)
    cfg = meta.get("config") or {}
    if cfg.get("fold") is not None:
        return int(cfg["fold"])
    sid = str(meta.get("split_id") or "")
    if ":fold" in sid:
        try:
            return int(sid.rsplit(":fold", 1)[1])
        except ValueError:
            pass
    return 0


def _resolve_patients(
    split: str,
    table: pd.DataFrame,
    splits_file: Path | None,
    fold: int,
    explicit_splits: bool,
) -> tuple[list[str], dict[str, Any] | None]:
    """Patient ids of the split (sorted) and the splits dict (``None`` if there is none for ``all``)."""
    splits = load_splits(splits_file) if splits_file is not None and splits_file.is_file() else None
    if splits is None and (explicit_splits or split != "all"):
        raise ValueError(
            f"no splits file at {splits_file}: pass --splits FILE (the splits.json the model was trained "
            "with) or use --split all to evaluate every patient of the index"
        )
    known = set(table["patient_id"].astype(str))
    if split == "all" or splits is None:
        return sorted(known), splits
    ids = part_patients(splits, split, fold)
    if not ids:
        raise ValueError(f"the {split!r} part of {splits_file} (fold {fold}) has no patients; choose another split")
    missing = sorted(set(ids) - known)
    if missing:
        raise ValueError(
            f"{len(missing)} patient(s) of the {split!r} split are not in the index (e.g. {missing[:3]}): "
            "the index and splits belong to different datasets; pass matching --data/--index and --splits"
        )
    return ids, splits


def _chosen(patients: list[str] | None, table: pd.DataFrame, ids: list[str]) -> list[str]:
    """Map chosen patients (folder id or ``TCGA_<site>_<n>`` name) to evaluated patient ids."""
    if not patients:
        return []
    by_name = dict(zip(table["patient"].astype(str), table["patient_id"].astype(str)))
    evaluated = set(ids)
    out: list[str] = []
    for p in patients:
        pid = p if p in evaluated else by_name.get(p)
        if pid not in evaluated:
            raise ValueError(
                f"chosen patient {p!r} is not among the {len(ids)} evaluated patients; "
                f"pick from e.g. {ids[:3]} (or use --split all)"
            )
        if pid not in out:
            out.append(pid)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"output folder {out} is not empty: pass overwrite=True (--overwrite) to replace its "
            "results, or choose another --out"
        )


def _prepare_out(out: Path, overwrite: bool) -> None:
    _check_out(out, overwrite)
    if out.is_dir():
        # Only our own outputs are removed; stale figures of an earlier run must not linger.
        shutil.rmtree(out / "figures", ignore_errors=True)
        for name in _OUTPUTS:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------------------------------
# per patient


def _read_patient(rows: pd.DataFrame, pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """``S x H x W x 3`` uint8 images and ``S x H x W`` bool masks of one patient, in slice order."""
    images = list(pool.map(read_image, rows["image_path"]))
    masks = list(pool.map(read_mask, rows["mask_path"]))
    shapes = {im.shape[:2] for im in images} | {m.shape for m in masks}
    if len(shapes) != 1:
        raise ValueError(
            f"patient {rows['patient_id'].iloc[0]} has slices of different sizes {sorted(shapes)}; "
            "every slice and mask of a patient must have the same height and width"
        )
    return np.stack(images), np.stack(masks).astype(bool)


def _patient_record(rows: pd.DataFrame, pred: np.ndarray, truth: np.ndarray, per_slice: pd.DataFrame) -> dict[str, Any]:
    volume = binary_metrics(pred, truth)
    case = per_slice["case"]
    tumour = case == "tumour"
    return {
        "patient_id": str(rows["patient_id"].iloc[0]),
        "patient": str(rows["patient"].iloc[0]),
        "site": str(rows["site"].iloc[0]),
        "n_slices": len(rows),
        "n_tumour_slices": int(tumour.sum()),
        "height": int(truth.shape[1]),
        "width": int(truth.shape[2]),
        **volume,
        "n_empty_truth_slices": int((~tumour).sum()),
        "n_false_positive_slices": int((case == "false_positive").sum()),
        "n_missed_tumour_slices": int((tumour & (per_slice["pred_pixels"] == 0)).sum()),
        "slice_dice_mean": float(per_slice.loc[tumour, "dice"].mean()) if tumour.any() else math.nan,
    }


# ----------------------------------------------------------------------------------------------------
# outputs


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so ``summary.json`` is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def _ranked(per_patient: pd.DataFrame) -> dict[str, str]:
    """Best, median and worst patients by volume Dice (patients with tumour only): label -> id."""
    scored = per_patient.dropna(subset=["dice"]).sort_values(["dice", "patient_id"], ascending=[False, True])
    if scored.empty:
        return {}
    ids = scored["patient_id"].tolist()
    return {"best": ids[0], "median": ids[len(ids) // 2], "worst": ids[-1]}


def _warnings(split: str, checkpoint_sid: str | None, eval_sid: str | None, have_splits: bool) -> list[str]:
    out = []
    if have_splits and checkpoint_sid and eval_sid != checkpoint_sid:
        out.append(
            f"split mismatch: the evaluated splits have id {eval_sid} but the checkpoint was trained with "
            f"{checkpoint_sid}; the evaluated patients may include patients the model was trained on"
        )
    if not checkpoint_sid:
        out.append("the checkpoint records no split id: cannot check that these patients were unseen in training")
    if split == "train":
        out.append("evaluated on the model's training patients: these metrics are optimistic, not a test result")
    elif split == "val":
        out.append(
            "evaluated on the validation patients, which selected the checkpoint: slightly optimistic; "
            "use the test split for the final estimate"
        )
    elif split == "all":
        out.append("split 'all' includes the patients the model was trained and selected on")
    return out


def evaluate(
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    split: str = "test",
    out: str | Path | None = None,
    index: str | Path | None = None,
    splits: str | Path | None = None,
    fold: int | None = None,
    postprocess: PostprocessConfig | None = None,
    patients: list[str] | None = None,
    figures: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    n_boot: int = 2000,
) -> Path:
    """Evaluate a model file on one part of the splits and write tables, figures and a report.

    Args:
        checkpoint: a ``best.pt``/``last.pt`` model file.
        data: a kaggle_3m folder; indexed when neither ``index`` nor the run's index fits it.
        split: ``test``, ``val``, ``train`` (of ``fold``) or ``all`` (every patient of the index).
        out: output folder (default ``<checkpoint folder>/eval_<split>``).
        index: an ``index.csv`` (default: the one of the checkpoint's training run).
        splits: a ``splits.json`` (default: the one of the checkpoint's training run).
        fold: fold for ``train``/``val`` (default: the checkpoint's).
        postprocess: post-processing (default: the checkpoint's stored settings).
        patients: patients (folder ids or ``TCGA_<site>_<n>`` names) to draw overlays for, in
            addition to the best, median and worst.
        figures: draw figures and GIFs (the tables and ``report.html`` are always written).
        progress: show a tqdm progress bar over patients.
        overwrite: replace the results in an existing non-empty ``out``.
        device: ``auto``, ``cpu``, ``cuda``... for the network.
        batch_size: slices per forward pass.
        n_boot: bootstrap resamples for the confidence intervals.

    Returns:
        The output folder.

    Raises:
        ValueError: unknown split, missing index/splits, patients of the split absent from the
            index, unknown chosen patients, a non-empty ``out`` without ``overwrite``, or a bad
            checkpoint.
    """
    t_start = time.perf_counter()
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {list(SPLITS)}")
    ckpt_path = Path(checkpoint).expanduser().resolve()
    seg = Segmenter.from_checkpoint(ckpt_path, device=device, postprocess=postprocess, batch_size=batch_size)
    meta = seg.meta
    cfg = meta.get("config") or {}
    out_dir = Path(out) if out is not None else ckpt_path.parent / f"eval_{split}"
    _check_out(out_dir, overwrite)  # before any slow work

    table, index_source = _resolve_index(data, index, cfg, progress)
    fold_k = _fold_of(meta, fold)
    splits_file = Path(splits) if splits is not None else _config_path(cfg, "splits", "splits.json")
    ids, splits_dict = _resolve_patients(split, table, splits_file, fold_k, splits is not None)
    chosen = _chosen(patients, table, ids)
    eval_sid = split_id(splits_dict, fold_k) if splits_dict is not None else None
    checkpoint_sid = meta.get("split_id")
    warnings = _warnings(split, checkpoint_sid, eval_sid, splits_dict is not None)
    for w in warnings:
        log.warning("%s", w)
    _prepare_out(out_dir, overwrite)
    fig_dir = out_dir / "figures"
    gif_dir = fig_dir / "gifs"

    rows_by_patient = {
        pid: rows.sort_values("slice")
        for pid, rows in table[table["patient_id"].isin(ids)].groupby("patient_id", sort=True)
    }
    records: list[dict[str, Any]] = []
    slice_tables: list[pd.DataFrame] = []
    packed: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}
    gifs: dict[str, Path] = {}
    timing = {"read": 0.0, "inference": 0.0, "metrics": 0.0, "figures": 0.0}
    with ThreadPoolExecutor(_READ_WORKERS) as pool:
        for pid in tqdm(ids, desc="evaluate", unit="patient", disable=not progress):
            rows = rows_by_patient[pid]
            t0 = time.perf_counter()
            images, truth = _read_patient(rows, pool)
            t1 = time.perf_counter()
            pred = postprocess_volume(seg.predict_proba(images), seg.postprocess)
            t2 = time.perf_counter()
            per_slice = slice_metrics(pred, truth)
            per_slice["slice"] = rows["slice"].to_numpy()
            per_slice.insert(0, "patient_id", pid)
            records.append(_patient_record(rows, pred, truth, per_slice))
            slice_tables.append(per_slice)
            t3 = time.perf_counter()
            if figures:
                gifs[pid] = _gif(gif_dir / f"{pid}.gif", images, truth, pred)
                # Bits are 8x smaller than bools; only the figure patients are unpacked again.
                packed[pid] = (np.packbits(pred), pred.shape)
            timing["read"] += t1 - t0
            timing["inference"] += t2 - t1
            timing["metrics"] += t3 - t2
            timing["figures"] += time.perf_counter() - t3

    per_patient = pd.DataFrame(records)
    per_slice_all = pd.concat(slice_tables, ignore_index=True)
    t0 = time.perf_counter()
    volume = summarise_table(per_patient, n_boot=n_boot)
    slices = summarise_table(per_slice_all, n_boot=n_boot)
    timing["metrics"] += time.perf_counter() - t0
    ranked = _ranked(per_patient)

    figure_list: list[tuple[str, Path]] = []
    if figures:
        t0 = time.perf_counter()
        figure_list = _draw_figures(
            fig_dir, per_patient, rows_by_patient, packed, ranked, chosen, ckpt_path, meta.get("epoch")
        )
        timing["figures"] += time.perf_counter() - t0

    empty_cases = {
        "patients_without_tumour": volume["cases"]["true_negative"] + volume["cases"]["false_positive"],
        "patients_without_tumour_with_prediction": volume["cases"]["false_positive"],
        "patients_with_tumour_missed_entirely": volume["n_tumour_empty_prediction"],
        "tumour_slices": slices["cases"]["tumour"],
        "tumour_slices_missed": slices["n_tumour_empty_prediction"],
        "empty_slices": slices["cases"]["true_negative"] + slices["cases"]["false_positive"],
        "empty_slices_true_negative": slices["cases"]["true_negative"],
        "empty_slices_false_positive": slices["cases"]["false_positive"],
        "false_positive_rate_on_empty_slices": slices["false_positive_rate_on_empty_truth"],
    }
    timing["total"] = time.perf_counter() - t_start
    resolution = sorted({f"{h}x{w}" for h, w in zip(per_patient["height"], per_patient["width"])})
    summary: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "package_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {
            "path": str(ckpt_path),
            "model": meta.get("model"),
            "epoch": meta.get("epoch"),
            "metrics": meta.get("metrics"),
            "split_id": checkpoint_sid,
        },
        "preprocess": meta.get("preprocess"),
        "postprocess": seg.postprocess.to_dict(),
        "data": {"index": index_source, "resolution": resolution, "metrics_at": "the data's own resolution"},
        "split": {
            "name": split,
            "fold": fold_k,
            "splits_file": str(splits_file.resolve()) if splits_dict is not None else None,
            "split_id": eval_sid,
            "checkpoint_split_id": checkpoint_sid,
            "matches_checkpoint": (eval_sid == checkpoint_sid) if eval_sid and checkpoint_sid else None,
            "patients": ids,
        },
        "warnings": warnings,
        "n_patients": len(ids),
        "n_slices": len(per_slice_all),
        "seconds": {k: round(v, 2) for k, v in timing.items()},
        "volume": volume,
        "slice": slices,
        "global_dice": dice_from_counts(
            per_patient["tp"].sum(), per_patient["pred_pixels"].sum(), per_patient["truth_pixels"].sum()
        ),
        "empty_cases": empty_cases,
        "ranked_patients": ranked,
        "chosen_patients": chosen,
        "figures": [str(p.relative_to(out_dir)) for _, p in figure_list],
        "patients": per_patient.to_dict("records"),
    }
    summary = _json_safe(summary)
    _write_csv(per_patient, out_dir / "per_patient.csv")
    _write_csv(per_slice_all, out_dir / "per_slice.csv")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")

    from gliomaseg.evaluation.html import write_report

    order = chosen + [ranked[k] for k in ("best", "median", "worst") if k in ranked]
    order += [pid for pid in ids if pid not in order]
    dice_of = dict(zip(per_patient["patient_id"], per_patient["dice"]))
    gif_list = [(f"{pid} (Dice {_dice_text(dice_of[pid])})", gifs[pid]) for pid in dict.fromkeys(order) if pid in gifs]
    write_report(out_dir / "report.html", summary, per_patient, figures=figure_list, gifs=gif_list)
    return out_dir


def _dice_text(dice: float) -> str:
    return "n/a, no tumour" if dice is None or math.isnan(dice) else f"{dice:.3f}"


def _gif(path: Path, images: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> Path:
    from gliomaseg.evaluation.figures import save_gif

    return save_gif(path, images, truth, pred)


def _draw_figures(
    fig_dir: Path,
    per_patient: pd.DataFrame,
    rows_by_patient: dict[str, pd.DataFrame],
    packed: dict[str, tuple[np.ndarray, tuple[int, ...]]],
    ranked: dict[str, str],
    chosen: list[str],
    ckpt_path: Path,
    epoch: int | None,
) -> list[tuple[str, Path]]:
    """Overlays (chosen, best, median, worst), Dice distribution and learning curves."""
    from gliomaseg.evaluation.figures import plot_dice_distribution, plot_learning_curves, plot_patient_overlays

    labels: dict[str, list[str]] = {pid: ["chosen"] for pid in chosen}
    for label, pid in ranked.items():
        labels.setdefault(pid, []).append(label)
    dice_of = dict(zip(per_patient["patient_id"], per_patient["dice"]))
    out: list[tuple[str, Path]] = []
    with ThreadPoolExecutor(_READ_WORKERS) as pool:
        for pid, names in labels.items():
            rows = rows_by_patient[pid]
            images, truth = _read_patient(rows, pool)
            bits, shape = packed[pid]
            pred = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)
            tag = ", ".join(names)
            title = f"{pid}: volume Dice {_dice_text(dice_of[pid])} ({tag})"
            path = plot_patient_overlays(
                fig_dir / f"overlay_{'_'.join(names)}_{pid}.png",
                images,
                truth,
                pred,
                title=title,
                slice_numbers=rows["slice"].tolist(),
            )
            out.append((f"{tag} patient {pid}: FLAIR with ground truth (green) and prediction (red)", path))
    path = plot_dice_distribution(fig_dir / "dice_distribution.png", per_patient["dice"])
    out.append(("Distribution of per-patient volume Dice", path))
    from gliomaseg.training.logs import read_training_log

    curves = plot_learning_curves(
        fig_dir / "learning_curves.png", read_training_log(ckpt_path.parent), best_epoch=epoch
    )
    if curves is not None:
        out.append(("Learning curves of the training run", curves))
    return out
