"""The on-disk memory-mapped slice cache: preprocessed slices of a whole index, built once.

The cache (:func:`build_cache`) stores the preprocessed slices of a whole index table under
``cache_root/<key>/`` where ``key`` hashes the settings and the source files (paths, sizes, mtimes), so
changing either gives a new cache and an unchanged one is reused at once. It holds single slices:
a 2.5D model's neighbours (``context_slices``) are stacked as the slices are read
(:class:`~gliomaseg.data.datamodule.SliceDataset`), so one cache serves every number of neighbours.

A build runs in parallel worker processes, each writing its patients' rows straight into the
memory maps of a temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gliomaseg.data.io import read_image, read_mask
from gliomaseg.data.normalise import PreprocessConfig, context_index, preprocess_volume, resize_volume
from gliomaseg.errors import GliomasegError
from gliomaseg.utils import exit_with_parent, owner_tag, remove_abandoned

__all__ = ["CACHE_FORMAT", "Cache", "build_cache", "cache_key", "open_cache"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "gliomaseg-cache/1"


@dataclass
class Cache:
    """An opened cache; the arrays are read-only memory maps, so opening is instant and cheap.

    Attributes:
        path: the cache directory (``cache_root/<key>``).
        images: float16 memmap ``N x H x W x 3``.
        masks: uint8 memmap ``N x H x W`` in {0, 1}.
        slices: one row per cached slice: ``patient_id``, ``slice``, ``row``, ``has_tumour``,
            ``tumour_pixels`` (of the cached, resized mask).
        config: the settings it was built with (``context_slices`` always 0: single slices).
        patients: patient ids in cache order.
        meta: the contents of ``meta.json``.
    """

    path: Path
    images: np.ndarray
    masks: np.ndarray
    slices: pd.DataFrame
    config: PreprocessConfig
    patients: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    _rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._rows:
            ordered = self.slices.sort_values(["slice", "row"], kind="stable")
            grouped = ordered.groupby("patient_id", sort=False)["row"]
            self._rows = {str(pid): rows.to_numpy(dtype=np.int64) for pid, rows in grouped}

    def rows_of(self, patient_id: str) -> np.ndarray:
        """Cache rows of one patient, ordered by slice.

        Raises:
            KeyError: the patient is not in this cache.
        """
        try:
            return self._rows[patient_id]
        except KeyError:
            raise KeyError(f"patient {patient_id!r} is not in the cache {self.path}") from None

    def context_rows(self, k: int) -> np.ndarray:
        """For every cache row, the rows of its slice and of the ``k`` neighbours on each side.

        Neighbours come from the same patient in slice order; at a patient's first and last slices the
        edge slice is repeated (:func:`~gliomaseg.data.normalise.context_index`, the rule inference uses).

        Args:
            k: neighbours on each side (>= 0).

        Returns:
            int64 ``N x (2k + 1)``, the row itself in column ``k``.
        """
        table = np.repeat(np.arange(len(self), dtype=np.int64)[:, None], 2 * k + 1, axis=1)
        for rows in self._rows.values():
            table[rows] = rows[context_index(len(rows), k)]
        return table

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickling (e.g. to spawned DataLoader workers) reopens the memmaps instead of copying the data.
        return (open_cache, (str(self.path),))


def _file_stamp(path: str) -> list[Any]:
    try:
        st = os.stat(path)
    except OSError as err:
        raise GliomasegError(f"{path}: cannot read ({err}); re-index the dataset") from err
    return [int(st.st_size), int(st.st_mtime_ns)]


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("patient_id", "slice", "image_path", "mask_path") if c not in table.columns]
    if missing:
        raise GliomasegError(f"index table lacks column(s) {missing}; build it with gliomaseg.data.index.index_dataset")
    if len(table) == 0:
        raise GliomasegError("index table is empty: nothing to cache")
    return table.reset_index(drop=True)


def cache_key(table: pd.DataFrame, cfg: PreprocessConfig) -> str:
    """Hash of the settings and the source files (paths, sizes, mtimes) in table order.

    Args:
        table: index table with ``image_path`` and ``mask_path``.
        cfg: preprocessing settings.

    Returns:
        16 hex digits.
    """
    table = _check_table(table)
    settings = cfg.to_dict()
    # Neighbours are stacked when slices are read, so they do not change the cache; leaving the key out
    # also keeps the caches built before the setting existed valid.
    settings.pop("context_slices", None)
    files = [
        [str(img), str(msk), *_file_stamp(str(img)), *_file_stamp(str(msk))]
        for img, msk in zip(table["image_path"], table["mask_path"])
    ]
    payload = {"format": CACHE_FORMAT, "config": settings, "files": files}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _process_patient(
    tmp_dir: str,
    rows: np.ndarray,
    image_paths: list[str],
    mask_paths: list[str],
    cfg_dict: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Read, preprocess and write one patient's slices into the memmaps in ``tmp_dir``.

    Runs in a worker; it writes its rows directly so no large array crosses a process boundary.

    Returns:
        ``(rows, tumour_pixels)`` of the cached masks.
    """
    cfg = PreprocessConfig.from_dict(cfg_dict)
    first = read_image(image_paths[0])
    volume = np.empty((len(image_paths), *first.shape), dtype=np.uint8)
    masks = np.empty(volume.shape[:3], dtype=np.uint8)
    for i, (ip, mp) in enumerate(zip(image_paths, mask_paths)):
        img = first if i == 0 else read_image(ip)
        msk = read_mask(mp)
        if img.shape != first.shape:
            raise GliomasegError(
                f"{ip}: shape {img.shape} differs from {first.shape} of {image_paths[0]} in the same "
                "patient; all slices of a patient must have one size"
            )
        if msk.shape != img.shape[:2]:
            raise GliomasegError(f"{mp}: mask shape {msk.shape} does not match its image {img.shape[:2]} ({ip})")
        volume[i] = img
        masks[i] = msk
    images_out = preprocess_volume(volume, cfg).astype(np.float16)
    masks_out = resize_volume(masks, cfg.size, "mask")
    img_mm = np.load(os.path.join(tmp_dir, "images.npy"), mmap_mode="r+")
    msk_mm = np.load(os.path.join(tmp_dir, "masks.npy"), mmap_mode="r+")
    contiguous = len(rows) > 0 and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
    index = slice(int(rows[0]), int(rows[0]) + len(rows)) if contiguous else rows
    img_mm[index] = images_out
    msk_mm[index] = masks_out
    # No msync here: the pages reach the file through the page cache, and an unfinished build is never
    # renamed into place, so forcing them to disk would only slow the build down.
    del img_mm, msk_mm
    return rows, masks_out.reshape(len(rows), -1).sum(axis=1, dtype=np.int64)


def _patient_jobs(table: pd.DataFrame) -> Iterable[tuple[np.ndarray, list[str], list[str]]]:
    for _, group in table.groupby("patient_id", sort=False):
        yield (
            group.index.to_numpy(dtype=np.int64),
            [str(p) for p in group["image_path"]],
            [str(p) for p in group["mask_path"]],
        )


def _make_executor(workers: int, kind: str) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers)
    # Workers of a killed build would otherwise wait on their queue forever.
    return ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),))


def build_cache(
    table: pd.DataFrame,
    cache_root: str | os.PathLike[str],
    cfg: PreprocessConfig | None = None,
    *,
    progress: bool = False,
    workers: int | None = None,
    executor: str = "process",
) -> Path:
    """Preprocess every slice of ``table`` into ``cache_root/<key>/`` (or reuse it if it exists).

    Writes ``images.npy`` (float16 ``N x H x W x 3``, rows in table order), ``masks.npy`` (uint8
    ``N x H x W`` in {0, 1}), ``slices.csv`` and ``meta.json``. The build happens in a temporary
    directory that is renamed into place at the end, so an interrupted or failed build leaves no
    partial cache; the temporary folder of a killed build is removed by the next build, and its
    worker processes exit when they notice their parent is gone.

    Args:
        table: index table (one row per slice; ``patient_id``, ``slice``, ``image_path``, ``mask_path``).
        cache_root: parent directory of all caches.
        cfg: settings (default :class:`PreprocessConfig()`); ``context_slices`` is ignored (the cache
            holds single slices).
        progress: show a tqdm progress bar over patients.
        workers: parallel patient workers (default: ``min(2, cpu count)``); ``1`` runs in-process.
        executor: ``"process"`` (default; measured faster here) or ``"thread"``.

    Returns:
        The cache directory, to pass to :func:`open_cache`.

    Raises:
        GliomasegError: bad table, unreadable/corrupt files (message names the file), bad ``workers``.
    """
    cfg = (cfg or PreprocessConfig()).per_slice()
    if executor not in ("process", "thread"):
        raise GliomasegError(f"executor={executor!r} must be 'process' or 'thread'")
    table = _check_table(table)
    cache_root = Path(cache_root)
    key = cache_key(table, cfg)
    final = cache_root / key
    if (final / "meta.json").is_file():
        return final
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise GliomasegError(f"workers={workers!r} must be a positive int")

    start = time.perf_counter()
    cache_root.mkdir(parents=True, exist_ok=True)
    remove_abandoned(cache_root, ".tmp-*")  # builds killed before they could clean up
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-{owner_tag()}-", dir=cache_root))
    try:
        n, size = len(table), cfg.size
        np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.float16, shape=(n, size, size, 3))
        np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
        _reserve(tmp / "images.npy", tmp / "masks.npy")
        tumour = _fill(tmp, table, cfg, workers, executor, progress)
        slices = pd.DataFrame(
            {
                "patient_id": table["patient_id"].astype(str),
                "slice": table["slice"].astype(int),
                "row": np.arange(n, dtype=np.int64),
                "has_tumour": tumour > 0,
                "tumour_pixels": tumour,
            }
        )
        slices.to_csv(tmp / "slices.csv", index=False)
        meta = _meta(key, cfg, slices, round(time.perf_counter() - start, 3))
        # meta.json last: its presence is what marks a cache as complete.
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built cache %s (%d slices) in %.1f s", final, n, time.perf_counter() - start)
    return final


def _reserve(*paths: Path) -> None:
    """Allocate the memory maps' disk space now: writing into a sparse map on a full disk kills the
    process with SIGBUS, while allocating fails here with an ordinary "no space left" error."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows
        return
    for path in paths:
        with open(path, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as err:
                raise OSError(err.errno, err.strerror, str(path)) from None


def _fill(
    tmp: Path, table: pd.DataFrame, cfg: PreprocessConfig, workers: int, executor: str, progress: bool
) -> np.ndarray:
    """Run the patient jobs (in-process or in a pool) that fill the memmaps; returns tumour pixels per row."""
    tumour = np.zeros(len(table), dtype=np.int64)
    jobs = list(_patient_jobs(table))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="cache", unit="patient")
    workers = min(workers, len(jobs))
    if workers == 1:
        for rows, imgs, msks in jobs:
            r, t = _process_patient(str(tmp), rows, imgs, msks, cfg.to_dict())
            tumour[r] = t
            if bar is not None:
                bar.update()
    else:
        with _make_executor(workers, executor) as pool:
            futures = [pool.submit(_process_patient, str(tmp), r, i, m, cfg.to_dict()) for r, i, m in jobs]
            try:
                for fut in as_completed(futures):
                    r, t = fut.result()
                    tumour[r] = t
                    if bar is not None:
                        bar.update()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    if bar is not None:
        bar.close()
    return tumour


def _meta(key: str, cfg: PreprocessConfig, slices: pd.DataFrame, seconds: float) -> dict[str, Any]:
    from gliomaseg import __version__

    return {
        "format": CACHE_FORMAT,
        "key": key,
        "config": cfg.to_dict(),
        "n": len(slices),
        "patients": int(slices["patient_id"].nunique()),
        "height": cfg.size,
        "width": cfg.size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "build_seconds": seconds,
    }


def _move_into_place(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError:
        if (final / "meta.json").is_file():  # another process finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(final, ignore_errors=True)  # leftover without meta.json is not a cache
        os.replace(tmp, final)


def open_cache(path: str | os.PathLike[str]) -> Cache:
    """Open a cache directory written by :func:`build_cache` (memory-mapped, read-only).

    Args:
        path: the directory returned by :func:`build_cache`.

    Returns:
        A :class:`Cache`.

    Raises:
        GliomasegError: ``path`` is not a complete cache.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise GliomasegError(f"{path} is not a gliomaseg cache (no meta.json); build one with build_cache")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != CACHE_FORMAT:
        raise GliomasegError(f"{path}: cache format {meta.get('format')!r} is not {CACHE_FORMAT!r}; rebuild it")
    images = np.load(path / "images.npy", mmap_mode="r")
    masks = np.load(path / "masks.npy", mmap_mode="r")
    slices = pd.read_csv(path / "slices.csv", dtype={"patient_id": str})
    if not (len(slices) == images.shape[0] == masks.shape[0] == meta.get("n")):
        raise GliomasegError(f"{path}: images, masks and slices.csv disagree on the slice count; rebuild it")
    patients = list(dict.fromkeys(slices["patient_id"].tolist()))
    return Cache(
        path=path,
        images=images,
        masks=masks,
        slices=slices,
        config=PreprocessConfig.from_dict(meta["config"]),
        patients=patients,
        meta=meta,
    )
