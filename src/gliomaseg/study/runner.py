"""One run of a study: train on a fold's training part, evaluate on its held-out part, write ``result.json``.

The model evaluated on the held-out fold is ``last.pt`` by default: every configuration trains
a fixed number of epochs and nothing is chosen on the held-out patients, so their scores are
honest out-of-fold estimates. ``checkpoint: best`` evaluates ``best.pt`` instead, which was
selected on those same patients and is therefore slightly optimistic (results.md says so).

A run is resumable at every stage: a finished run (``result.json``) is skipped; an interrupted
training continues from Lightning's ``last.ckpt``; a finished training (``trained.json``) is only
evaluated. A per-run file lock keeps two processes sharing the folder off the same run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import Callback

from gliomaseg import __version__
from gliomaseg.errors import GliomasegError
from gliomaseg.study.folder import Study, open_study, settings_digest
from gliomaseg.study.grid import RunSpec
from gliomaseg.utils import atomic_write_text, json_safe

__all__ = ["PATIENT_COLUMNS", "RESULT_FORMAT", "TrainTimer", "execute_run", "run_one", "run_status"]

log = logging.getLogger(__name__)

RESULT_FORMAT = "gliomaseg-study-run/1"
#: Per-patient columns of the evaluation kept in ``result.json``.
PATIENT_COLUMNS = (
    "patient_id",
    "site",
    "case",
    "n_slices",
    "dice",
    "iou",
    "hd95",
    "precision",
    "sensitivity",
    "truth_pixels",
    "pred_pixels",
    "dice_shifted",
)


class TrainTimer(Callback):
    """Adds up the training wall time over resumed sessions in a JSON file (written each epoch).

    Args:
        path: the ``train_time.json`` file; a resumed session starts from its ``seconds``.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.prior = 0.0
        self.start = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.prior = json.loads(self.path.read_text())["seconds"] if self.path.is_file() else 0.0
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            seconds = self.prior + time.perf_counter() - self.start
            atomic_write_text(self.path, json.dumps({"seconds": seconds, "epochs": trainer.current_epoch + 1}))


def run_status(study: Study, spec: RunSpec) -> str:
    """``done`` (result.json), ``trained`` (evaluation pending), ``started`` (partial) or ``todo``."""
    run_dir = study.run_dir(spec)
    if (run_dir / "result.json").is_file():
        return "done"
    if (run_dir / "trained.json").is_file():
        return "trained"
    return "started" if run_dir.is_dir() else "todo"


def execute_run(study_dir: str, run_name: str) -> str:
    """Run one run of a prepared study folder by name (the function a SLURM array task calls).

    Returns:
        The run's status afterwards (``done``, or ``skipped`` when another process holds it).
    """
    study = open_study(study_dir)
    result = run_one(study, study.spec(run_name))
    return "skipped" if result is None else "done"


def run_one(study: Study, spec: RunSpec, *, progress: bool = False) -> dict[str, Any] | None:
    """Train and evaluate one run unless it is finished; resume it if it was interrupted.

    Args:
        study: the prepared study.
        spec: the run.
        progress: progress bar over the evaluated patients.

    Returns:
        The run's result (also in ``runs/<run>/result.json``), or None when another process is
        running it, or when this is not the rank-0 process of a multi-GPU job (those processes
        train beside rank 0 and leave the lock, the evaluation and the result to it).

    Raises:
        GliomasegError: the evaluation's split id differs from the study's.

    Example:
        >>> study = open_study("studies/cpu-small")  # doctest: +SKIP
        >>> run_one(study, study.spec("unet__dice__fold0"))["patients"][0]["dice"]  # doctest: +SKIP
        0.83
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    run_dir = study.run_dir(spec)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if rank_zero_only.rank != 0:
        # Another process of a multi-GPU (DDP) job: train beside rank 0, which holds the lock and evaluates.
        _train(study, spec, run_dir)
        return None
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(study.runs_dir / f".{spec.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("run %s is being run by another process: skipped", spec.name)
        return None
    try:
        if result_path.is_file():  # finished by another process between the check and the lock
            return json.loads(result_path.read_text())
        trained = _train(study, spec, run_dir)
        result = _evaluate(study, spec, run_dir, trained, progress)
        atomic_write_text(result_path, json.dumps(json_safe(result), indent=1) + "\n")
        return result
    finally:
        lock.release()


def _train(study: Study, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    from gliomaseg.training.trainer import train

    done = run_dir / "trained.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = study.train_config(spec)
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    # Without Lightning's checkpoint an earlier attempt died in its first epoch: start that run afresh.
    log.info("%s run %s (%d epochs)", "resuming" if resume else "training", spec.name, cfg.epochs)
    timer = TrainTimer(run_dir / "train_time.json")
    train(cfg, resume=True if resume else None, overwrite=not resume, callbacks=[timer])
    seconds = json.loads(timer.path.read_text())["seconds"] if timer.path.is_file() else 0.0
    trained = {"seconds": round(seconds, 2), "epochs": cfg.epochs}
    atomic_write_text(done, json.dumps(trained) + "\n")
    return trained


def _evaluate(study: Study, spec: RunSpec, run_dir: Path, trained: dict[str, Any], progress: bool) -> dict[str, Any]:
    from gliomaseg.checkpoint import load_model
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.training.models import count_parameters

    ckpt = run_dir / f"{study.config.checkpoint}.pt"
    if not ckpt.is_file():
        raise GliomasegError(f"{ckpt} is missing: the training of {spec.name} wrote no model file")
    options = {"figures": False, **study.config.evaluate}
    t0 = time.perf_counter()
    evaluation = evaluate(ckpt, split="val", out=run_dir / "eval_val", overwrite=True, progress=progress, **options)
    summary = evaluation.summary
    sid = str(summary["split"]["split_id"] or "")
    if sid != f"{study.split_id}:fold{spec.fold}":
        raise GliomasegError(
            f"run {spec.name} was evaluated on split {sid}, not on the study's {study.split_id}:fold{spec.fold}"
        )
    model, meta = load_model(ckpt)
    shifted = _shifted(run_dir / "eval_val" / "shifts.csv") if summary.get("shifts") else {}
    patients = [{k: record.get(k) for k in PATIENT_COLUMNS} for record in summary["patients"]]
    for record in patients:
        record["dice_shifted"] = shifted.get("mean", {}).get(record["patient_id"])
    return {
        "format": RESULT_FORMAT,
        "run": spec.name,
        "config": spec.config,
        "fold": spec.fold,
        "labels": spec.labels,
        "settings_digest": settings_digest(study.record["settings"]),
        "split_id": sid,
        "package_version": __version__,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": ckpt.name,
        "checkpoint_epoch": meta.get("epoch"),
        "epochs": trained["epochs"],
        "train_seconds": trained["seconds"],
        "eval_seconds": round(time.perf_counter() - t0, 2),
        "n_parameters": count_parameters(model),
        "patients": patients,
        "shifts": shifted.get("per_shift"),
    }


def _shifted(path: Path) -> dict[str, Any]:
    """From an evaluation's ``shifts.csv``: each patient's mean Dice over the shifts, and every shift's Dice."""
    import pandas as pd

    table = pd.read_csv(path)
    mean = table.groupby("patient_id")["dice"].mean()
    per_shift = {
        str(name): dict(zip(group["patient_id"], group["dice"].astype(float))) for name, group in table.groupby("shift")
    }
    return {"mean": {str(k): (None if pd.isna(v) else float(v)) for k, v in mean.items()}, "per_shift": per_shift}
