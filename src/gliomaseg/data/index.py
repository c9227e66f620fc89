"""Scanning a ``kaggle_3m`` folder (or a user's own slices in the same naming scheme) into a table.

Layouts accepted under ``root``:

- ``root/<patient>/<patient>_<n>.tif`` with ``root/<patient>/<patient>_<n>_mask.tif`` (Kaggle; an
  optional ``root/data.csv`` holds clinical and genomic data keyed by ``Patient``);
- the same with ``.tiff`` or ``.png`` files, in patient sub-folders or flat in ``root`` (then the
  patient is the file-name prefix ``<name>`` of ``<name>_<n>.<ext>``);
- the Kaggle download's parent folder that contains ``kaggle_3m/``.

Every image and mask is read once to validate it, so a bad file fails here, naming the file, and not
in the middle of training.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gliomaseg.data.index_table import INDEX_COLUMNS
from gliomaseg.data.io import LOSSLESS_SUFFIXES, read_image, read_mask
from gliomaseg.data.normalise import MIN_SIZE
from gliomaseg.errors import GliomasegError

__all__ = ["IndexResult", "index_dataset"]

logger = logging.getLogger(__name__)


_SLICE_RE = re.compile(r"^(?P<name>.+)_(?P<n>\d+)(?P<mask>_mask)?$")
_DATE_RE = re.compile(r"_\d{8}$")
_SITE_RE = re.compile(r"^TCGA_([A-Za-z0-9]+)_")
_EXPECTED_LAYOUT = "expected files like <patient>_<n>.tif with <patient>_<n>_mask.tif"

#: The smallest slice side ``index`` accepts: the smallest training size (four pooling levels).
MIN_SIDE = MIN_SIZE


@dataclass
class IndexResult:
    """What :func:`index_dataset` found.

    Attributes:
        table: one row per valid slice, columns :data:`INDEX_COLUMNS` then the ``data.csv`` columns.
        skipped: ``(path, reason)`` for each file left out (only with ``skip_bad=True``).
    """

    table: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Slice:
    patient_id: str
    n: int
    image: Path
    mask: Path


def patient_key(patient_id: str) -> str:
    """The ``data.csv`` key of a patient folder: the name without a trailing ``_<8-digit date>``."""
    return _DATE_RE.sub("", patient_id)


def site_of(patient_id: str) -> str:
    """The acquisition site token of ``TCGA_<site>_...`` names, else ``"unknown"``."""
    m = _SITE_RE.match(patient_id)
    return m.group(1) if m else "unknown"


def _resolve_root(root: Path) -> Path:
    if not root.exists():
        raise GliomasegError(f"dataset folder {root} does not exist; {_EXPECTED_LAYOUT}")
    if not root.is_dir():
        raise GliomasegError(f"{root} is not a folder; pass the folder that holds the patient folders")
    # The Kaggle archive unpacks to <dl>/kaggle_3m (and a duplicate <dl>/lgg-mri-segmentation/kaggle_3m).
    for sub in (root / "kaggle_3m", root / "lgg-mri-segmentation" / "kaggle_3m"):
        if sub.is_dir() and not _has_slice_files(root):
            logger.info("indexing %s (found inside %s)", sub, root)
            return sub
    return root


def _is_hidden(p: Path) -> bool:
    return p.name.startswith((".", "__"))


def _slice_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not _is_hidden(p) and p.suffix.lower() in LOSSLESS_SUFFIXES
    )


def _has_slice_files(folder: Path) -> bool:
    return any(_SLICE_RE.match(p.stem) for p in _slice_files(folder))


def _message(path: str, reason: str) -> str:
    """An error message that names the file exactly once."""
    return reason if path in reason else f"{path}: {reason}"


def _pair_files(files: Iterable[Path], patient_of: str | None, bad: list[tuple[str, str]]) -> list[_Slice]:
    """Match ``<name>_<n>`` images with ``<name>_<n>_mask`` masks in one folder.

    ``patient_of`` is the folder name for patient folders, or None for a flat folder, where the
    file-name prefix is the patient. Problems are appended to ``bad`` as ``(path, reason)``.
    """
    images: dict[tuple[str, int], list[tuple[Path, tuple[str, str]]]] = {}
    masks: dict[tuple[str, str], Path] = {}
    unrecognised: list[Path] = []
    for p in files:
        m = _SLICE_RE.match(p.stem)
        if m is None:
            unrecognised.append(p)
            continue
        key = (m.group("name"), m.group("n"))
        if m.group("mask"):
            masks[key] = p
        else:
            pid = patient_of if patient_of is not None else m.group("name")
            images.setdefault((pid, int(m.group("n"))), []).append((p, key))
    if unrecognised:
        logger.warning(
            "ignoring %d file(s) not named <patient>_<n>[_mask].<ext>, e.g. %s",
            len(unrecognised),
            unrecognised[0],
        )
    out: list[_Slice] = []
    for (pid, n), found in sorted(images.items()):
        if len(found) > 1:
            names = ", ".join(p.name for p, _ in found)
            reason = f"slice {n} of patient {pid} appears more than once ({names}); keep one"
            bad.append((str(found[1][0]), reason))
            continue
        img, key = found[0]
        mask = masks.get(key)
        if mask is None:
            expected = img.with_name(f"{img.stem}_mask{img.suffix}")
            bad.append((str(img), f"image without its mask: expected {expected}"))
            continue
        out.append(_Slice(pid, n, img, mask))
    image_keys = {k for v in images.values() for _, k in v}
    for key, mask in sorted(masks.items()):
        if key not in image_keys:
            stem = mask.stem[: -len("_mask")]
            bad.append((str(mask), f"mask without its image: expected {mask.with_name(stem + mask.suffix)}"))
    return out


@dataclass
class _SliceInfo:
    height: int
    width: int
    tumour_pixels: int
    pre_is_flair: bool
    post_is_flair: bool
    flair_nonzero: bool


def _read_slice(s: _Slice) -> _SliceInfo | str:
    """Validate one slice; return its facts, or the reason it is bad (an error string)."""
    try:
        img = read_image(s.image)
        mask = read_mask(s.mask)
    except ValueError as err:
        return str(err)
    if img.shape[:2] != mask.shape:
        return (
            f"{s.image}: image is {img.shape[0]} x {img.shape[1]} but its mask {s.mask} is "
            f"{mask.shape[0]} x {mask.shape[1]}; they must match"
        )
    flair = img[..., 1]
    return _SliceInfo(
        height=int(img.shape[0]),
        width=int(img.shape[1]),
        tumour_pixels=int(np.count_nonzero(mask)),
        pre_is_flair=bool(np.array_equal(img[..., 0], flair)),
        post_is_flair=bool(np.array_equal(img[..., 2], flair)),
        flair_nonzero=bool(flair.any()),
    )


def _read_data_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"Patient": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise GliomasegError(f"{path}: cannot read as CSV ({err}); fix or remove the file") from err
    if "Patient" not in df.columns:
        raise GliomasegError(
            f"{path}: has no 'Patient' column (columns: {', '.join(map(str, df.columns))}); "
            "it must be keyed by patient like the Kaggle data.csv, or remove it"
        )
    df = df.dropna(subset=["Patient"])
    df["Patient"] = df["Patient"].str.strip()
    dup = df["Patient"][df["Patient"].duplicated()]
    if len(dup):
        raise GliomasegError(f"{path}: patient {dup.iloc[0]!r} has more than one row; keep one row per patient")
    clash = [c for c in df.columns if c in INDEX_COLUMNS]
    if clash:
        logger.warning("%s: renaming column(s) %s to csv_<name> to keep the index columns", path, clash)
        df = df.rename(columns={c: f"csv_{c}" for c in clash})
    return df


def index_dataset(root: str | os.PathLike[str], *, skip_bad: bool = False, progress: bool = False) -> IndexResult:
    """Scan a dataset folder into a table with one row per slice, validating every file.

    One run names every bad file: naming problems (a missing mask or image, an empty or unreadable
    patient folder, a duplicate slice number), pixel problems (unreadable, truncated, wrong shape
    or dtype, a non-binary mask) and sizes (image and mask differ, a slice under :data:`MIN_SIDE`
    pixels, or not the size of the rest of its patient: one volume has one size). Patients of
    different sizes are allowed (slices are resized to the training size) and logged.

    Args:
        root: a ``kaggle_3m`` folder, its parent, or a folder of own slices (see the module docstring).
        skip_bad: leave bad slices out and list them in ``IndexResult.skipped`` instead of raising.
        progress: show a tqdm progress bar while reading.

    Returns:
        :class:`IndexResult`; its table is sorted by ``(patient_id, slice)`` and has the columns
        :data:`INDEX_COLUMNS` followed by every ``data.csv`` column except ``Patient`` (left-joined
        on ``patient``; patients without a row get NaN). ``has_pre``/``has_post`` are False for a
        patient whose pre-/post-contrast channel equals FLAIR on every slice (the dataset fills a
        missing sequence with FLAIR); all-zero slices match trivially and so decide nothing.

    Raises:
        GliomasegError: ``root`` is missing or holds no slices; or (without ``skip_bad``) any bad
            file: one error lists them all. With ``skip_bad`` only when no valid slice is left.

    Example:
        >>> import tempfile
        >>> from gliomaseg.data.phantoms import synthesise_dataset
        >>> root = synthesise_dataset(tempfile.mkdtemp(), 2, size=64)
        >>> index_dataset(root).table["patient_id"].nunique()
        2
    """
    root = _resolve_root(Path(root).expanduser().resolve())
    bad: list[tuple[str, str]] = []
    slices = _unique_slices(_scan(root, bad), bad)
    if not slices and not bad:
        raise GliomasegError(f"no slices found in {root}: {_EXPECTED_LAYOUT}")
    infos = _read_all(slices, progress)
    rows = []
    for s, info in zip(slices, infos):
        if isinstance(info, str):
            bad.append((str(s.mask) if info.startswith(str(s.mask)) else str(s.image), info))
        else:
            rows.append((s, info))
    rows = _check_sizes(rows, bad)
    if bad and not skip_bad:
        raise GliomasegError(_bad_files_message(root, bad))
    if not rows:
        raise GliomasegError(
            f"no valid slices in {root} ({len(bad)} bad file(s), first: {_message(*min(bad))})"
            if bad
            else f"no slices found in {root}: {_EXPECTED_LAYOUT}"
        )
    table = _build_table(rows)
    csv_path = root / "data.csv"
    if csv_path.is_file():
        table = _join_data_csv(table, _read_data_csv(csv_path))
    return IndexResult(table=table, skipped=sorted(bad))


def _scan(root: Path, bad: list[tuple[str, str]]) -> list[_Slice]:
    """Pair the images and masks of ``root`` (flat) and of its patient folders; problems go to ``bad``."""
    slices: list[_Slice] = []
    flat = _slice_files(root)
    if flat:
        slices += _pair_files(flat, None, bad)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)):
        try:
            files = _slice_files(d)
        except PermissionError:
            bad.append((str(d), f"cannot list {d} (permission denied); fix its permissions"))
            continue
        if not any(_SLICE_RE.match(p.stem) for p in files):
            # A folder without any images and without a TCGA name (e.g. a results folder) is not a
            # patient; one with mis-named images or a TCGA name is a patient missing its slices.
            if files or _SITE_RE.match(d.name):
                bad.append((str(d), f"no slices found in {d}: {_EXPECTED_LAYOUT}"))
            else:
                logger.warning("ignoring folder %s: it holds no slices", d)
            continue
        slices += _pair_files(files, d.name, bad)
    return slices


def _unique_slices(slices: list[_Slice], bad: list[tuple[str, str]]) -> list[_Slice]:
    """Sort by (patient, slice) and drop repeats (e.g. a patient both flat and in a folder) into ``bad``."""
    seen: dict[tuple[str, int], _Slice] = {}
    for s in sorted(slices, key=lambda s: (s.patient_id, s.n)):
        first = seen.setdefault((s.patient_id, s.n), s)
        if first is not s:
            reason = f"slice {s.n} of patient {s.patient_id} appears twice ({first.image} and {s.image}); keep one"
            bad.append((str(s.image), reason))
    return list(seen.values())


def _check_sizes(rows: list[tuple[_Slice, _SliceInfo]], bad: list[tuple[str, str]]) -> list[tuple[_Slice, _SliceInfo]]:
    """Keep the slices of at least MIN_SIDE pixels that have their patient's size (its most common one)."""
    counts: dict[str, Counter[tuple[int, int]]] = {}
    for s, i in rows:
        counts.setdefault(s.patient_id, Counter())[i.height, i.width] += 1
    patient_size = {pid: c.most_common(1)[0][0] for pid, c in counts.items()}
    kept = []
    for s, i in rows:
        h, w = size = (i.height, i.width)
        common = patient_size[s.patient_id]
        if min(size) < MIN_SIDE:
            bad.append((str(s.image), f"slice is {h} x {w} pixels; slices must be at least {MIN_SIDE} x {MIN_SIDE}"))
        elif size != common:
            reason = (
                f"slice is {h} x {w} but {counts[s.patient_id][common]} other slice(s) of patient {s.patient_id} "
                f"are {common[0]} x {common[1]}; every slice of a patient must have one size (re-export it at "
                "that size)"
            )
            bad.append((str(s.image), reason))
        else:
            kept.append((s, i))
    sizes = Counter(patient_size.values())
    if len(sizes) > 1:
        shown = ", ".join(f"{h} x {w}: {n} patient(s)" for (h, w), n in sizes.most_common())
        logger.warning("patients have slices of different sizes (%s); each is resized to the training size", shown)
    return kept


def _bad_files_message(root: Path, bad: list[tuple[str, str]]) -> str:
    listed = "; ".join(f"({k}) {_message(path, reason).rstrip('.')}" for k, (path, reason) in enumerate(sorted(bad), 1))
    return f"{len(bad)} bad file(s) in {root}: {listed}. Fix or remove them, or pass --skip-bad to leave them out"


def _read_all(slices: list[_Slice], progress: bool) -> list[_SliceInfo | str]:
    # Measured on the 3279-slice set with 2 cores: threads beat a serial loop by ~15% (file I/O and
    # numpy release the GIL; Pillow's TIFF header parsing does not) and a process pool by more, as
    # pickling results and starting workers cost more than they save.
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable[_SliceInfo | str] = pool.map(_read_slice, slices)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(slices), desc="indexing", unit="slice")
        return list(results)


def _build_table(rows: list[tuple[_Slice, _SliceInfo]]) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "patient_id": [s.patient_id for s, _ in rows],
            "patient": [patient_key(s.patient_id) for s, _ in rows],
            "site": [site_of(s.patient_id) for s, _ in rows],
            "slice": np.array([s.n for s, _ in rows], dtype=np.int64),
            "image_path": [str(s.image) for s, _ in rows],
            "mask_path": [str(s.mask) for s, _ in rows],
            "height": np.array([i.height for _, i in rows], dtype=np.int64),
            "width": np.array([i.width for _, i in rows], dtype=np.int64),
            "tumour_pixels": np.array([i.tumour_pixels for _, i in rows], dtype=np.int64),
        }
    )
    table["has_tumour"] = table["tumour_pixels"] > 0
    facts = pd.DataFrame(
        {
            "patient_id": table["patient_id"],
            "pre_eq": [i.pre_is_flair for _, i in rows],
            "post_eq": [i.post_is_flair for _, i in rows],
            "nonzero": [i.flair_nonzero for _, i in rows],
        }
    ).groupby("patient_id")
    # Missing = equal to FLAIR on every slice of a volume that has some signal.
    any_signal = facts["nonzero"].any()
    has_pre = ~(facts["pre_eq"].all() & any_signal)
    has_post = ~(facts["post_eq"].all() & any_signal)
    table["has_pre"] = table["patient_id"].map(has_pre).astype(bool)
    table["has_post"] = table["patient_id"].map(has_post).astype(bool)
    table["sequences"] = [
        "+".join(n for n, ok in (("pre", pre), ("flair", True), ("post", post)) if ok)
        for pre, post in zip(table["has_pre"], table["has_post"])
    ]
    return table.sort_values(["patient_id", "slice"], kind="stable").reset_index(drop=True)


def _join_data_csv(table: pd.DataFrame, csv: pd.DataFrame) -> pd.DataFrame:
    extra = csv.rename(columns={"Patient": "patient"})
    out = table.merge(extra, on="patient", how="left", validate="many_to_one")
    unmatched = sorted(set(table["patient"]) - set(csv["Patient"]))
    if unmatched:
        logger.info("%d patient(s) have no data.csv row: %s", len(unmatched), ", ".join(unmatched[:5]))
    return out
