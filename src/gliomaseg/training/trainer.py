"""``train()``: one training run on Lightning, from a resolved :class:`TrainConfig` to a run folder.

The run folder (``<workdir>/runs/<arch>__<loss>__fold<k>/`` unless ``runs_dir`` says otherwise) holds
``config.yaml``, the self-describing model files ``best.pt``/``last.pt`` (written by
:class:`ModelFileCallback`, with the patients trained and selected on), Lightning's resume state in
``checkpoints/`` and the CSV/TensorBoard logs in ``logs/``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from gliomaseg.checkpoint import BEST_ON_VALIDATION, LAST_EPOCH, LAST_EPOCH_NO_VALIDATION, save_checkpoint
from gliomaseg.data.augment import augment_config
from gliomaseg.data.datamodule import GliomaDataModule
from gliomaseg.data.io import KAGGLE_3M_ORIENTATION
from gliomaseg.data.splits import part_patients, split_id
from gliomaseg.data.workspace import prepare
from gliomaseg.devices import cpu_has_native_bf16
from gliomaseg.errors import GliomasegError
from gliomaseg.training.config import TrainConfig
from gliomaseg.training.guards import FiniteGuard, check_resume_settings, fit, make_trainer, read_resume_checkpoint
from gliomaseg.training.logs import csv_version
from gliomaseg.training.module import MONITOR, SegmentationModule
from gliomaseg.training.run_folder import LAST_CKPT, plan_run, start_run_folder

__all__ = [
    "BEST_ON_VALIDATION",
    "LAST_EPOCH",
    "LAST_EPOCH_NO_VALIDATION",
    "ModelFileCallback",
    "resolve_precision",
    "train",
]

log = logging.getLogger(__name__)


class ModelFileCallback(Callback):
    """Writes the self-describing model files ``best.pt`` (best ``val/dice_patient``) and ``last.pt``.

    Without validation patients (``split --val-fraction 0``: a final model trained on every
    non-test patient) nothing can select an epoch: both files hold the last epoch.

    Args:
        run_dir: the run folder.
        meta: what :func:`gliomaseg.checkpoint.save_checkpoint` stores beside the weights.
        validation: whether the run has validation patients.
    """

    def __init__(self, run_dir: Path, meta: dict[str, Any], validation: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.validation = validation
        self.best = -math.inf

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or MONITOR not in trainer.callback_metrics:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        meta = {**self.meta, "epoch": trainer.current_epoch, "metrics": metrics}
        save_checkpoint(self.run_dir / "last.pt", pl_module.model, {**meta, "selection": LAST_EPOCH})
        if metrics[MONITOR] > self.best:
            self.best = metrics[MONITOR]
            save_checkpoint(self.run_dir / "best.pt", pl_module.model, {**meta, "selection": BEST_ON_VALIDATION})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validation or not trainer.is_global_zero:
            return
        meta = {**self.meta, "epoch": trainer.current_epoch, "metrics": {}, "selection": LAST_EPOCH_NO_VALIDATION}
        save_checkpoint(self.run_dir / "last.pt", pl_module.model, meta)
        save_checkpoint(self.run_dir / "best.pt", pl_module.model, meta)


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning's precision for ``precision="auto"``: mixed precision wherever the hardware has it.

    On a CUDA GPU bf16 autocast where the card supports it (no loss scaling needed), else fp16; on a
    CPU with native bf16 bf16 autocast (about 2x the float32 step on the project machine, see
    docs/performance.md), else float32.
    """
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def _absolute_paths(cfg: TrainConfig) -> TrainConfig:
    # The saved config (and the model file) must find index, splits and data from any folder.
    changes = {
        key: str(Path(value).expanduser().resolve())
        for key in ("data", "workdir", "index", "splits")
        if (value := getattr(cfg, key)) is not None
    }
    # where the run folders are (by default inside the working folder), recorded in config.yaml
    changes["runs_dir"] = str(cfg.runs_root.expanduser().resolve())
    return dataclasses.replace(cfg, **changes)


def _global_rank() -> int:
    # Lightning's ddp launcher, torchrun and SLURM re-run this command once per process.
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def _module(cfg: TrainConfig, n_rows: int) -> SegmentationModule:
    # Channels-last suits oneDNN on CPUs and the tensor cores of CUDA GPUs under mixed precision;
    # Apple's MPS backend gains nothing from it.
    on_mps = cfg.accelerator == "mps" or (
        cfg.accelerator == "auto" and not torch.cuda.is_available() and torch.backends.mps.is_available()
    )
    return SegmentationModule(
        model_name=cfg.arch,
        model_kwargs={"in_channels": cfg.preprocess_config().channels, "out_channels": 1, "features": cfg.features},
        loss=cfg.loss,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        scheduler=cfg.scheduler,
        threshold=cfg.threshold,
        n_rows=n_rows,
        channels_last=not on_mps,
    )


def _trainer(
    cfg: TrainConfig,
    run_dir: Path,
    meta: dict[str, Any],
    *,
    resuming: bool,
    extra_callbacks: list[Callback],
    validation: bool = True,
) -> L.Trainer:
    # One Lightning checkpoint, the resume state of the latest epoch, rewritten in place as
    # checkpoints/last.ckpt: the best epoch's weights are best.pt already. (save_last=True with
    # save_top_k=0 writes nothing at all in Lightning 2.x, and save_top_k=1 beside save_last
    # writes the optimiser state twice per epoch.)
    ckpt = ModelCheckpoint(
        run_dir / LAST_CKPT.parent,
        filename=LAST_CKPT.stem,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=None if validation else True,
    )
    callbacks = [
        ckpt,
        ModelFileCallback(run_dir, meta, validation),
        LearningRateMonitor(logging_interval="epoch"),
        TQDMProgressBar(refresh_rate=10),
        *extra_callbacks,
    ]
    if cfg.early_stopping and validation:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.early_stopping))
    return L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        default_root_dir=run_dir,
        logger=[
            CSVLogger(run_dir, name="logs", version=csv_version(run_dir, resuming)),
            TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=callbacks,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches if validation else 0,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    callbacks: list[Callback] | None = None,
) -> Path:
    """Train one model as configured; returns the run folder.

    Args:
        cfg: the resolved configuration.
        resume: ``True`` to continue the run folder's ``checkpoints/last.ckpt`` (or to restart a run
            stopped before its first checkpoint), or a path to a Lightning checkpoint; restores
            epoch, optimiser and scheduler state. ``cfg`` must agree with the folder's
            ``config.yaml`` (see :mod:`gliomaseg.training.run_folder`), which is never rewritten.
        overwrite: replace an existing run folder instead of refusing.
        callbacks: extra Lightning callbacks.

    Raises:
        GliomasegError: nothing to resume, settings that contradict the run's, bad settings, data or
            hardware (all found before the run folder is created), or a diverging run.
        OutputExistsError: the run folder exists (and neither resume nor overwrite).
        KeyboardInterrupt: the run was interrupted (SIGTERM, Ctrl-C); the message says how to resume.

    Example:
        >>> from gliomaseg.data.phantoms import synthesise_dataset
        >>> from gliomaseg.training.config import resolve_config
        >>> data = synthesise_dataset("demo/kaggle_3m", 12, size=64)  # doctest: +SKIP
        >>> cfg = resolve_config({"data": str(data), "workdir": "demo", "epochs": 2}, preset="demo")  # doctest: +SKIP
        >>> train(cfg)  # doctest: +SKIP
        PosixPath('/.../runs/unet__bce_dice__fold0')
    """
    cfg = _absolute_paths(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Everything is checked before the run folder is touched, so a refused run leaves nothing behind.
    plan = plan_run(cfg, resume, overwrite, main_process=_global_rank() == 0)
    resumed = read_resume_checkpoint(plan.ckpt_path) if plan.ckpt_path is not None else None
    ws = prepare(
        data=cfg.data,
        workdir=cfg.workdir,
        preprocess=cfg.preprocess_config(),
        index_path=cfg.index_path,
        splits_path=cfg.splits_path,
    )
    if cfg.fold >= len(ws.splits["folds"]):
        raise GliomasegError(f"fold={cfg.fold}: {cfg.splits_path} has {len(ws.splits['folds'])} folds")
    dm = GliomaDataModule(
        ws.cache_dir,
        ws.splits,
        fold=cfg.fold,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        augment=augment_config(cfg.augment),
        tumour_fraction=cfg.tumour_fraction,
        seed=cfg.seed,
        context_slices=cfg.context_slices,
    )
    module = _module(cfg, n_rows=len(ws.table))
    if resumed is not None:
        check_resume_settings(plan.ckpt_path, resumed, module.hparams)
    meta = {
        "model": {"name": cfg.arch, "kwargs": module.hparams.model_kwargs},
        "preprocess": cfg.preprocess_config().to_dict(),
        "postprocess": cfg.postprocess_config().to_dict(),
        # Where the training slices' rows, columns and slices point: predict turns scans to it.
        "orientation": list(KAGGLE_3M_ORIENTATION),
        "split_id": split_id(ws.splits, cfg.fold),
        # who the model has seen, so that evaluate can tell unseen patients from seen ones on any data
        "train_patients": part_patients(ws.splits, "train", cfg.fold),
        "val_patients": part_patients(ws.splits, "val", cfg.fold),
        "config": cfg.to_dict(),
    }
    extra = [FiniteGuard(), *(callbacks or [])]
    resuming = plan.ckpt_path is not None
    validation = bool(part_patients(ws.splits, "val", cfg.fold))
    if not validation and cfg.early_stopping:
        raise GliomasegError(
            f"early_stopping={cfg.early_stopping} needs validation patients, but fold {cfg.fold} of "
            f"{cfg.splits_path} has none: set early_stopping 0 (the epoch count decides)"
        )
    trainer = make_trainer(
        lambda: _trainer(cfg, plan.run_dir, meta, resuming=resuming, extra_callbacks=extra, validation=validation),
        cfg,
    )
    start_run_folder(plan, cfg, main_process=_global_rank() == 0)
    fit(trainer, module, dm, plan.ckpt_path, plan.run_dir)
    if _global_rank() == 0 and not (plan.run_dir / "last.pt").is_file():
        # Lightning ends "successfully" when no batch ran (e.g. limit_train_batches rounds to 0).
        raise GliomasegError(
            f"the run trained nothing: {plan.run_dir} has no model file (no training batch ran in "
            f"{trainer.current_epoch} epoch(s)); raise --limit-train-batches or check the training patients"
        )
    return plan.run_dir
