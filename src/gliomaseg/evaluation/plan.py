"""What an evaluation covers: the index, the splits file, the patients of the split, the warnings.

The first stage of :func:`gliomaseg.evaluation.evaluator.evaluate`: everything here is cheap and
runs before any image is read, so a wrong path or split fails at once.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.checkpoint import BEST_ON_VALIDATION, LAST_EPOCH, LAST_EPOCH_NO_VALIDATION
from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import index_built_from, load_index
from gliomaseg.data.splits import PARTS, load_splits, part_patients, split_id
from gliomaseg.errors import GliomasegError, OutputExistsError

__all__ = [
    "OUTPUTS",
    "EvaluationPlan",
    "check_output_folder",
    "plan_evaluation",
    "prepare_output_folder",
    "recorded_patients",
    "split_matches",
]

log = logging.getLogger(__name__)

#: The files of an evaluation folder (besides ``figures/``).
OUTPUTS = ("summary.json", "per_patient.csv", "per_slice.csv", "shifts.csv", "report.html")


@dataclass
class EvaluationPlan:
    """The resolved inputs of an evaluation.

    Attributes:
        split: ``test``, ``val``, ``train`` or ``all``.
        fold: the fold of ``train``/``val``.
        table: the index table (every patient, not only the evaluated ones).
        index_source: where the index came from (a path, or "built from DIR").
        splits_file: the ``splits.json`` used, or None (``all`` without one).
        splits: its contents, or None.
        patients: the evaluated patient ids, sorted.
        chosen: patients to draw overlays for, besides best/median/worst.
        split_id: id of the evaluated splits and fold (None without splits).
        checkpoint_split_id: the id stored in the model file (a list for an ensemble).
        warnings: what the report must say about these patients.
    """

    split: str
    fold: int
    table: pd.DataFrame
    index_source: str
    splits_file: Path | None
    splits: dict[str, Any] | None
    patients: list[str]
    chosen: list[str]
    split_id: str | None
    checkpoint_split_id: str | list | None
    warnings: list[str] = field(default_factory=list)

    def rows_by_patient(self) -> dict[str, pd.DataFrame]:
        """The index rows of each evaluated patient, in slice order."""
        table = self.table[self.table["patient_id"].isin(self.patients)]
        return {pid: rows.sort_values("slice") for pid, rows in table.groupby("patient_id", sort=True)}


def plan_evaluation(
    meta: dict[str, Any],
    *,
    split: str,
    data: str | Path | None,
    index: str | Path | None,
    splits: str | Path | None,
    fold: int | None,
    patients: list[str] | None,
    progress: bool,
    recorded: Sequence[dict[str, list[str]] | None] | None = None,
) -> EvaluationPlan:
    """Resolve index, splits, patients and warnings for a model file's metadata (see ``evaluate``).

    Args:
        recorded: per model (each member of an ensemble), the patients it was trained and selected on
            (``{"train": [...], "val": [...]}``, see :func:`recorded_patients`), or None where its file
            records none. Used for the warnings: only evaluated patients that a model has seen are
            flagged.

    Raises:
        GliomasegError: unknown split, missing index/splits, patients of the split absent from the
            index, or unknown chosen patients.
    """
    if split not in PARTS:
        raise GliomasegError(f"split={split!r}: choose one of {list(PARTS)}")
    cfg = meta.get("config") or {}
    table, index_source = _resolve_index(data, index, cfg, progress)
    fold_k = _fold_of(meta, fold)
    splits_file = Path(splits) if splits is not None else _config_path(cfg, "splits", "splits.json")
    ids, splits_dict = _resolve_patients(split, table, splits_file, fold_k, splits is not None)
    eval_sid = split_id(splits_dict, fold_k) if splits_dict is not None else None
    checkpoint_sid = meta.get("split_id")
    seen = _seen(meta, recorded, splits_dict, eval_sid)
    if seen is not None:
        warnings = _seen_warnings(ids, *seen)
    else:
        # a last.pt was not chosen on the validation patients (model files record how their epoch was chosen)
        warnings = _warnings(split, checkpoint_sid, eval_sid, splits_dict is not None, meta.get("selection"))
    for w in warnings:
        log.warning("%s", w)
    return EvaluationPlan(
        split=split,
        fold=fold_k,
        table=table,
        index_source=index_source,
        splits_file=splits_file.resolve() if splits_dict is not None else None,
        splits=splits_dict,
        patients=ids,
        chosen=_chosen(patients, table, ids),
        split_id=eval_sid,
        checkpoint_split_id=checkpoint_sid,
        warnings=warnings,
    )


def _config_path(cfg: dict[str, Any], key: str, default_name: str) -> Path:
    """Path of the training run's index/splits: the explicit setting, else ``<workdir>/<name>``."""
    explicit = cfg.get(key)
    return Path(explicit) if explicit else Path(cfg.get("workdir") or ".") / default_name


def _resolve_index(
    data: str | Path | None, index: str | Path | None, cfg: dict[str, Any], progress: bool
) -> tuple[pd.DataFrame, str]:
    """The index table and where it came from: ``index``, else the run's, else built from ``data``."""
    if index is not None:
        table = load_index(index)
        if data is not None and not index_built_from(table, data):
            raise GliomasegError(
                f"index {index} was built from another folder than {data}; pass only one of them, "
                "or an index of that folder"
            )
        return table, str(Path(index).resolve())
    run_index = _config_path(cfg, "index", "index.csv")
    if run_index.is_file():
        table = load_index(run_index)
        if data is None or index_built_from(table, data):
            return table, str(run_index.resolve())
        log.info("the run's index %s is of another folder than %s: indexing %s", run_index, data, data)
    if data is None:
        # The run's path is of the machine the model was trained on: naming it would only confuse.
        raise GliomasegError(
            "the model's training index is not on this machine: pass --data DIR (a kaggle_3m folder) or --index FILE"
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
    if splits is None and explicit_splits:
        raise GliomasegError(f"no splits file at {splits_file}: pass an existing --splits FILE")
    if splits is None and split != "all":
        # The run's path is of the machine the model was trained on (the bundled model's, say): not named.
        raise GliomasegError(
            f"--split {split} needs the splits file the model was trained with, which is not on this machine: "
            "pass --split all to evaluate every patient of --data (or --index), or --splits FILE"
        )
    known = set(table["patient_id"].astype(str))
    if split == "all" or splits is None:
        return sorted(known), splits
    ids = part_patients(splits, split, fold)
    if not ids:
        raise GliomasegError(
            f"the {split!r} part of {splits_file} (fold {fold}) has no patients: choose another --split "
            "(--split all evaluates every patient of --data or --index) or pass --splits FILE"
        )
    missing = sorted(set(ids) - known)
    if missing:
        raise GliomasegError(
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
            raise GliomasegError(
                f"chosen patient {p!r} is not among the {len(ids)} evaluated patients; "
                f"pick from e.g. {ids[:3]} (or use --split all)"
            )
        if pid not in out:
            out.append(pid)
    return out


def split_matches(eval_sid: str | None, checkpoint_sid: str | list | None) -> bool | None:
    """Whether the model (each member of an ensemble) was trained with the evaluated splits file
    (and, for one model, fold); None when either id is unknown."""
    if not eval_sid or not checkpoint_sid:
        return None
    if isinstance(checkpoint_sid, list):
        return all(str(s).split(":fold")[0] == eval_sid.split(":fold")[0] for s in checkpoint_sid)
    return eval_sid == checkpoint_sid


def _split_mismatch(split: str, checkpoint_sid: str | list | None, eval_sid: str | None) -> str | None:
    """Why the model's split ids do not fit the evaluated patients, or None."""
    if isinstance(checkpoint_sid, list):  # an ensemble: members of one splits file, any folds
        files = {str(s).split(":fold")[0] for s in checkpoint_sid}
        if eval_sid is not None and files != {eval_sid.split(":fold")[0]}:
            return (
                f"split mismatch: the ensemble's members were trained with splits {sorted(files)} but the "
                f"evaluated splits have id {eval_sid}; the evaluated patients may include training patients"
            )
        if split in ("train", "val") and len(set(checkpoint_sid)) > 1:
            return (
                f"the ensemble's members were trained on different folds: the {split!r} patients of one fold "
                "are training patients of another, so these metrics are optimistic; use the test split"
            )
        return None
    if checkpoint_sid and eval_sid != checkpoint_sid:
        return (
            f"split mismatch: the evaluated splits have id {eval_sid} but the checkpoint was trained with "
            f"{checkpoint_sid}; the evaluated patients may include patients the model was trained on"
        )
    return None


def recorded_patients(meta: dict[str, Any]) -> dict[str, list[str]] | None:
    """The patients a model file records it was trained on (``train``) and selected its epoch on
    (``val``, empty when the last epoch was kept), or None for files that predate the record."""
    if meta.get("train_patients") is None:
        return None
    selected = (meta.get("val_patients") or []) if meta.get("selection") == BEST_ON_VALIDATION else []
    return {"train": list(meta["train_patients"]), "val": list(selected)}


def _seen(
    meta: dict[str, Any],
    recorded: Sequence[dict[str, list[str]] | None] | None,
    splits: dict[str, Any] | None,
    eval_sid: str | None,
) -> tuple[set[str], set[str]] | None:
    """The patients the model (every member) was trained on and selected on, or None when unknown.

    A file that does not record them is matched with the evaluated splits file when that is the file it
    was trained with (same split id); otherwise nothing is claimed.
    """
    members = meta.get("ensemble") or [meta]
    records = list(recorded) if recorded is not None else [recorded_patients(m) for m in members]
    trained: set[str] = set()
    selected: set[str] = set()
    for member, record in zip(members, records):
        sid = str(member.get("split_id") or "")
        if record is None and splits is not None and eval_sid and sid.split(":fold")[0] == eval_sid.split(":fold")[0]:
            fold = int(sid.rsplit(":fold", 1)[1]) if ":fold" in sid else 0
            best = member.get("selection") not in (LAST_EPOCH, LAST_EPOCH_NO_VALIDATION)
            record = {
                "train": part_patients(splits, "train", fold),
                "val": part_patients(splits, "val", fold) if best else [],
            }
        if record is None:
            return None
        trained |= set(record["train"])
        selected |= set(record["val"])
    return trained, selected - trained


def _seen_warnings(ids: list[str], trained: set[str], selected: set[str]) -> list[str]:
    """What the report must say about evaluated patients the model has seen (nothing when none)."""
    out = []
    for seen, what, effect in (
        (trained, "were used to train the model", "their metrics are optimistic, not a test result"),
        (selected, "selected the model's epoch (validation)", "slightly optimistic; use unseen patients"),
    ):
        overlap = sorted(set(ids) & seen)
        if overlap:
            shown = ", ".join(overlap[:3]) + (", ..." if len(overlap) > 3 else "")
            out.append(f"{len(overlap)} of the {len(ids)} evaluated patients {what} ({shown}): {effect}")
    return out


def _warnings(
    split: str, checkpoint_sid: str | list | None, eval_sid: str | None, have_splits: bool, selection: Any = None
) -> list[str]:
    out = []
    mismatch = _split_mismatch(split, checkpoint_sid, eval_sid) if have_splits else None
    if mismatch:
        out.append(mismatch)
    if not checkpoint_sid or (isinstance(checkpoint_sid, list) and not all(checkpoint_sid)):
        out.append("the model file records no split id: cannot check that these patients were unseen in training")
    if split == "train":
        out.append("evaluated on the model's training patients: these metrics are optimistic, not a test result")
    elif split == "val" and selection not in (LAST_EPOCH, LAST_EPOCH_NO_VALIDATION):
        out.append(
            "evaluated on the validation patients, which selected the checkpoint: slightly optimistic; "
            "use the test split for the final estimate"
        )
    elif split == "all" and checkpoint_sid:
        out.append(
            "the model file does not record its training patients (nor is the splits file it was trained with "
            "given): cannot check whether these patients were seen in training"
        )
    return out


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder without ``overwrite`` (before any slow work)."""
    if out.exists() and not out.is_dir():
        raise GliomasegError(f"output {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"output folder {out} is not empty: pass --overwrite to replace its results, or choose another --out"
        )


def prepare_output_folder(out: Path, overwrite: bool, outputs: Sequence[str] = OUTPUTS) -> None:
    """Create a report's output folder, removing only the outputs of an earlier run in it.

    Args:
        out: the folder.
        overwrite: allow a non-empty folder (see :func:`check_output_folder`).
        outputs: the report's own files; they and its ``figures/`` go, anything else stays.
    """
    check_output_folder(out, overwrite)
    if out.is_dir():
        # Only our own outputs are removed; stale figures of an earlier run must not linger.
        shutil.rmtree(out / "figures", ignore_errors=True)
        for name in outputs:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
