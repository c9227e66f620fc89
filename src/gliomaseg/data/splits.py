"""Patient-level, grouped, stratified and seeded splits, written once to ``splits.json`` and reused.

Every slice of a patient lands in the same part, so no patient leaks between training, model
selection and the final test. A fixed test part is drawn first (stratified); the remaining patients
are split into one train/val holdout or into ``k`` stratified folds.

Strata are built per patient from the acquisition site (the ``TCGA_<site>_...`` code) and the tumour
burden (tertiles of the patient's total tumour pixels). Sites with too few patients for every part to
receive one are merged into an ``"other"`` group; if the combined strata are still too small for
scikit-learn's stratified splitters, the burden (then the site) is dropped and what was actually used
is recorded under ``"stratify"`` in the JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.utils import atomic_write_text

__all__ = [
    "PARTS",
    "SPLITS_FORMAT",
    "load_splits",
    "make_splits",
    "part_patients",
    "save_splits",
    "split_id",
]

logger = logging.getLogger(__name__)

SPLITS_FORMAT = "gliomaseg-splits/1"
_STRATIFY_KEYS = ("site", "burden")
PARTS: tuple[str, ...] = ("test", "val", "train", "all")
"""The parts of a ``splits.json`` a model can be evaluated on (``all``: every patient of the index)."""
_OTHER = "other"


def _patient_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: ``site`` and total ``tumour_pixels``, sorted by ``patient_id``."""
    missing = [c for c in ("patient_id", "site", "tumour_pixels") if c not in table.columns]
    if missing:
        raise GliomasegError(f"index table lacks column(s) {missing}; build it with gliomaseg.data.index.index_dataset")
    if len(table) == 0:
        raise GliomasegError("index table is empty: there are no patients to split")
    patients = (
        table.groupby("patient_id", sort=True)
        .agg(site=("site", "first"), tumour_pixels=("tumour_pixels", "sum"))
        .reset_index()
    )
    patients["site"] = patients["site"].astype(str)
    return patients


def _merge_small_sites(sites: pd.Series, min_count: int) -> pd.Series:
    """Merge sites with fewer than ``min_count`` patients into ``"other"``.

    If ``"other"`` itself stays too small, the next smallest sites join it until it is large enough
    (or everything is one group), so every resulting group can give one patient to every part.
    """
    counts = sites.value_counts()
    small = set(counts[counts < min_count].index)
    if not small:
        return sites
    for site, _n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if sum(counts[s] for s in small) >= min_count:
            break
        small.add(site)
    logger.info("merging site(s) %s into %r so every site group has >= %d patients", sorted(small), _OTHER, min_count)
    return sites.where(~sites.isin(small), _OTHER)


def _burden_tertiles(tumour_pixels: pd.Series) -> pd.Series:
    """Tertiles of patient tumour burden; ranks break ties so the three groups are equally sized."""
    if len(tumour_pixels) < 3:
        return pd.Series(["all"] * len(tumour_pixels), index=tumour_pixels.index)
    ranks = tumour_pixels.rank(method="first")
    return pd.qcut(ranks, 3, labels=["low", "mid", "high"]).astype(str)


def _n_from_fraction(fraction: float, n: int) -> int:
    """Patients in a part of ``fraction`` of ``n``: rounded, but at least 1 when the fraction is > 0."""
    return 0 if fraction <= 0 else max(1, int(round(fraction * n)))


def _try_split(
    patients: np.ndarray,
    labels: np.ndarray,
    *,
    n_test: int,
    n_val: int,
    n_folds: int,
    seed: int,
) -> tuple[list[str], list[dict[str, list[str]]]]:
    """Run the stratified splitters; raises ``ValueError`` when a stratum is too small for them."""
    with warnings.catch_warnings():
        # StratifiedKFold only warns when a class is smaller than n_splits; treat that as too small.
        warnings.simplefilter("error", UserWarning)
        if n_test > 0:
            rest, test = train_test_split(patients, test_size=n_test, stratify=labels, random_state=seed, shuffle=True)
            rest_labels = labels[np.isin(patients, rest)]
            rest = patients[np.isin(patients, rest)]
        else:
            test, rest, rest_labels = np.array([], dtype=patients.dtype), patients, labels
        folds: list[dict[str, list[str]]] = []
        if n_folds == 1 and n_val == 0:  # every non-test patient trains (a final model)
            folds.append({"train": sorted(map(str, rest)), "val": []})
        elif n_folds == 1:
            train, val = train_test_split(rest, test_size=n_val, stratify=rest_labels, random_state=seed, shuffle=True)
            folds.append({"train": sorted(map(str, train)), "val": sorted(map(str, val))})
        else:
            skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            for tr, va in skf.split(rest, rest_labels):
                folds.append({"train": sorted(map(str, rest[tr])), "val": sorted(map(str, rest[va]))})
    for fold in folds:
        if not fold["train"] or (n_val and not fold["val"]):
            raise GliomasegError("a fold has an empty part")
    return sorted(map(str, test)), folds


def _check_split_settings(test_fraction: float, val_fraction: float, n_folds: int, stratify: Sequence[str]) -> int:
    """Validate :func:`make_splits`' settings; returns ``n_folds`` as an int."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise GliomasegError(f"n_folds={n_folds!r} must be an integer >= 1 (1 = single train/val holdout)")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise GliomasegError(f"test_fraction={test_fraction!r} must be in [0, 1) (0 = no test part)")
    if n_folds == 1:
        if not 0.0 <= float(val_fraction) < 1.0:
            raise GliomasegError(
                f"val_fraction={val_fraction!r} must be in [0, 1) for a holdout split (0: every non-test "
                "patient trains, a final model kept at its last epoch)"
            )
        if float(test_fraction) + float(val_fraction) >= 1.0:
            raise GliomasegError(
                f"test_fraction={test_fraction!r} + val_fraction={val_fraction!r} must be < 1 "
                "to leave patients for training"
            )
    unknown = [s for s in stratify if s not in _STRATIFY_KEYS]
    if unknown or isinstance(stratify, str):
        raise GliomasegError(f"stratify={stratify!r}: use a list of any of {list(_STRATIFY_KEYS)}")
    return int(n_folds)


def make_splits(
    table: pd.DataFrame,
    *,
    test_fraction: float = 0.15,
    val_fraction: float = 0.15,
    n_folds: int = 1,
    seed: int = 0,
    stratify: Sequence[str] = ("site", "burden"),
) -> dict[str, Any]:
    """Split the patients of an index table into a fixed test part and train/val holdout or folds.

    Args:
        table: the index table (one row per slice) with at least ``patient_id``, ``site`` and
            ``tumour_pixels``.
        test_fraction: fraction of all patients held out as the test part, in ``[0, 1)``;
            ``0`` means no test part.
        val_fraction: fraction of all patients used for validation when ``n_folds == 1``; ``0``
            puts every non-test patient in training (no validation: the final model of a recipe
            whose epoch count was chosen before, e.g. by cross-validation)
            (ignored, but recorded, for k folds where each fold's val is one ``1/k`` part).
        n_folds: ``1`` for a single train/val holdout, ``k >= 2`` for stratified k-fold on the
            non-test patients (every non-test patient is in exactly one fold's val).
        seed: random seed of every splitter.
        stratify: any of ``"site"`` and ``"burden"`` (tertiles of total tumour pixels per patient).
            What could actually be used is recorded in the result's ``"stratify"``.

    Returns:
        The splits dict in the ``splits.json`` format (sorted patient lists; see module docstring).

    Raises:
        GliomasegError: bad fractions, folds or stratify keys, or too few patients for the parts.
    """
    n_folds = _check_split_settings(test_fraction, val_fraction, n_folds, stratify)
    patients = _patient_table(table)
    n = len(patients)
    n_test = _n_from_fraction(float(test_fraction), n)
    n_rest = n - n_test
    n_val = _n_from_fraction(float(val_fraction), n) if n_folds == 1 else 0
    need_rest = n_folds if n_folds > 1 else 2
    if n_rest < need_rest or (n_folds == 1 and n_rest - n_val < 1):
        raise GliomasegError(
            f"{n} patient(s) are too few for test_fraction={test_fraction}, val_fraction={val_fraction}, "
            f"n_folds={n_folds}: lower the fractions/folds or add patients"
        )

    # Parts every stratum has to feed: test (if any) and either train+val or each fold's val.
    n_parts = (1 if n_test else 0) + (2 if n_folds == 1 else n_folds)
    site = _merge_small_sites(patients["site"], n_parts)
    burden = _burden_tertiles(patients["tumour_pixels"])
    columns = {"site": site, "burden": burden}

    wanted = [s for s in _STRATIFY_KEYS if s in stratify]
    candidates: list[list[str]] = [wanted]
    if len(wanted) == 2:
        candidates += [["site"], ["burden"]]
    candidates.append([])

    ids = patients["patient_id"].astype(str).to_numpy()
    last_error: Exception | None = None
    for used in candidates:
        if used:
            labels = columns[used[0]].astype(str)
            for key in used[1:]:
                labels = labels + "|" + columns[key].astype(str)
        else:
            labels = pd.Series(["all"] * n, index=patients.index)
        label_arr = labels.to_numpy()
        counts = pd.Series(label_arr).value_counts()
        if used and counts.min() < n_parts:
            last_error = ValueError(f"stratum {counts.idxmin()!r} has {counts.min()} < {n_parts} patients")
            continue
        try:
            test, folds = _try_split(ids, label_arr, n_test=n_test, n_val=n_val, n_folds=n_folds, seed=int(seed))
        except (ValueError, UserWarning) as err:
            if not used:
                raise GliomasegError(f"cannot split {n} patient(s): {err}") from err
            last_error = err
            continue
        if used != wanted:
            logger.warning(
                "stratify=%s was too fine for %d patients (%s); used %s instead",
                list(wanted),
                n,
                last_error,
                used,
            )
        return {
            "format": SPLITS_FORMAT,
            "seed": int(seed),
            "test_fraction": float(test_fraction),
            "val_fraction": float(val_fraction),
            "n_folds": n_folds,
            "stratify": used,
            "index_patients": n,
            "test": test,
            "folds": folds,
            "strata": {pid: str(lab) for pid, lab in zip(ids, label_arr)},
        }
    raise AssertionError("unreachable: the unstratified candidate either returns or raises")


def _canonical(splits: dict[str, Any]) -> str:
    return json.dumps(splits, sort_keys=True, separators=(",", ":"))


def _validate(splits: Any, source: str) -> dict[str, Any]:
    if not isinstance(splits, dict) or splits.get("format") != SPLITS_FORMAT:
        got = splits.get("format") if isinstance(splits, dict) else type(splits).__name__
        raise GliomasegError(f"{source}: format {got!r} is not {SPLITS_FORMAT!r}; recreate it with make_splits")
    for key in ("test", "folds", "strata", "seed", "n_folds"):
        if key not in splits:
            raise GliomasegError(f"{source}: missing key {key!r}; recreate it with make_splits")
    folds = splits["folds"]
    if not isinstance(folds, list) or not folds:
        raise GliomasegError(f"{source}: 'folds' must be a non-empty list of {{'train': [...], 'val': [...]}}")
    test = set(splits["test"])
    if len(test) != len(splits["test"]):
        raise GliomasegError(f"{source}: a patient is listed twice in 'test'")
    pool: set[str] | None = None
    for i, fold in enumerate(folds):
        if not isinstance(fold, dict) or "train" not in fold or "val" not in fold:
            raise GliomasegError(f"{source}: fold {i} must have 'train' and 'val' lists")
        train, val = fold["train"], fold["val"]
        for name, part in (("train", train), ("val", val)):
            if len(set(part)) != len(part):
                dup = sorted(p for p in set(part) if part.count(p) > 1)[0]
                raise GliomasegError(f"{source}: patient {dup!r} is listed twice in fold {i} {name}")
        both = sorted(set(train) & set(val))
        if both:
            raise GliomasegError(f"{source}: patient {both[0]!r} is in both train and val of fold {i}")
        leak = sorted(test & (set(train) | set(val)))
        if leak:
            raise GliomasegError(f"{source}: test patient {leak[0]!r} is also in fold {i}")
        here = set(train) | set(val)
        if pool is not None and here != pool:
            odd = sorted(here ^ pool)[0]
            raise GliomasegError(f"{source}: patient {odd!r} is in fold {i} but not in every fold")
        pool = here
    return splits


def save_splits(splits: dict[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``splits`` to ``path`` as JSON, atomically, once.

    Args:
        splits: the dict from :func:`make_splits`.
        path: target file (e.g. ``splits.json``).
        overwrite: replace an existing file with different content.

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` holds different splits and ``overwrite`` is false.
        GliomasegError: ``splits`` is malformed (see :func:`load_splits`).
    """
    path = Path(path)
    _validate(splits, "splits to save")
    if path.exists() and not overwrite:
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            existing = None
        if existing is not None and _canonical(existing) == _canonical(splits):
            return path
        raise OutputExistsError(
            f"{path} already holds different splits; splits are written once and reused so results "
            "stay comparable (pass --overwrite to replace them)"
        )
    atomic_write_text(path, json.dumps(splits, indent=2, sort_keys=True) + "\n")
    return path


def load_splits(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``splits.json``.

    Args:
        path: the file written by :func:`save_splits`.

    Returns:
        The splits dict.

    Raises:
        FileNotFoundError: no such file.
        GliomasegError: wrong format, or a patient in two parts (the message names the patient).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GliomasegError(f"{path}: not valid JSON ({err}); recreate it with make_splits") from err
    return _validate(data, str(path))


def _check_fold(splits: dict[str, Any], fold: int) -> None:
    n = len(splits["folds"])
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n:
        raise GliomasegError(f"fold={fold!r} is out of range: these splits have {n} fold(s) (0..{n - 1})")


def split_id(splits: dict[str, Any], fold: int = 0) -> str:
    """Short stable id of the splits and fold, e.g. ``"3f2a9c1b0d4e:fold0"``.

    Args:
        splits: the splits dict.
        fold: fold index.

    Returns:
        12 hex digits of the sha256 of the canonical JSON, ``":fold"`` and the fold index.
    """
    _check_fold(splits, fold)
    digest = hashlib.sha256(_canonical(splits).encode("utf-8")).hexdigest()[:12]
    return f"{digest}:fold{int(fold)}"


def part_patients(splits: dict[str, Any], part: str, fold: int = 0) -> list[str]:
    """Sorted patient ids of one part.

    Args:
        splits: the splits dict.
        part: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every patient in the splits).
        fold: fold index for ``"train"``/``"val"``.

    Returns:
        Sorted list of patient ids (empty for ``"test"`` when there is no test part).

    Raises:
        GliomasegError: unknown part or fold out of range.
    """
    if part not in PARTS:
        raise GliomasegError(f"part={part!r} must be one of {list(PARTS)}")
    _check_fold(splits, fold)
    if part == "test":
        return sorted(splits["test"])
    f = splits["folds"][int(fold)]
    if part == "all":
        return sorted(set(splits["test"]) | set(f["train"]) | set(f["val"]))
    return sorted(f[part])
