"""Training on Lightning: the LightningModule, the model-file callback and :func:`train`.

Validation reports the **per-patient (volume) Dice** at the training resolution: for each
validation patient, ``2|P∩T| / (|P|+|T|)`` over all of its slices, then the mean over patients.
It selects the best checkpoint. Counts are kept per slice row and combined across processes
with a maximum, so under DDP each slice counts once even where the distributed sampler pads
a shard with repeated slices.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from gliomaseg.checkpoint import save_checkpoint
from gliomaseg.config import TrainConfig, save_config
from gliomaseg.data.datamodule import GliomaDataModule, augment_config
from gliomaseg.data.preprocess import PreprocessConfig
from gliomaseg.data.splits import split_id
from gliomaseg.losses import create_loss
from gliomaseg.models import create_model
from gliomaseg.workspace import prepare

__all__ = ["ModelFileCallback", "SegmentationModule", "read_training_log", "train"]

log = logging.getLogger(__name__)
MONITOR = "val/dice_patient"


class SegmentationModule(L.LightningModule):
    """A segmentation network, its loss and optimiser.

    Args:
        model_name: a name from :func:`gliomaseg.models.list_models`.
        model_kwargs: keyword arguments for :func:`gliomaseg.models.create_model`.
        loss: a name from :func:`gliomaseg.losses.list_losses`.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate (the peak rate for ``onecycle``).
        weight_decay: weight decay.
        scheduler: ``none``, ``onecycle`` (per step), ``cosine`` (per epoch) or ``plateau``.
        threshold: probability threshold for the validation masks.
        n_rows: number of slice rows in the cache (size of the per-slice validation buffer).
        channels_last: use channels-last memory format (faster convolutions on CPU).
    """

    def __init__(
        self,
        model_name: str = "unet",
        model_kwargs: dict[str, Any] | None = None,
        loss: str = "dice",
        optimizer: str = "adam",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        threshold: float = 0.5,
        n_rows: int = 1,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model_name, **(model_kwargs or {}))
        self.loss_fn = create_loss(loss)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._val_rows: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` images -> ``B x 1 x H x W`` logits."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss_fn(logits.float(), batch["mask"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def on_validation_epoch_start(self) -> None:
        # columns: intersection, predicted, true pixels, patient index, seen flag
        self._val_rows = torch.zeros(self.hparams.n_rows, 5, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"]).float()
        target = batch["mask"]
        self.log("val/loss", self.loss_fn(logits, target), sync_dist=True, batch_size=len(logits))
        pred = (torch.sigmoid(logits) > self.hparams.threshold).float()
        stats = torch.stack(
            [
                (pred * target).sum(dim=(1, 2, 3)),
                pred.sum(dim=(1, 2, 3)),
                target.sum(dim=(1, 2, 3)),
                batch["patient_index"].float(),
                torch.ones(len(pred), device=pred.device),
            ],
            dim=1,
        )
        self._val_rows[batch["row"].long()] = stats

    def on_validation_epoch_end(self) -> None:
        rows = self._val_rows
        if self.trainer.world_size > 1:
            rows = self.all_gather(rows).amax(dim=0)
        rows = rows[rows[:, 4] > 0]
        if len(rows) == 0:
            return
        n_patients = int(rows[:, 3].max().item()) + 1
        per_patient = torch.zeros(n_patients, 3, device=rows.device)
        per_patient.index_add_(0, rows[:, 3].long(), rows[:, :3])
        inter, pred, true = per_patient.unbind(1)
        present = (pred + true) > 0
        # A patient with no tumour and no prediction scores 1 here (only for model selection; every
        # kaggle_3m patient has tumour). Evaluation reports such cases separately.
        dice = torch.where(present, 2 * inter / (pred + true).clamp_min(1), torch.ones_like(inter))
        self.log(MONITOR, dice.mean(), prog_bar=True)
        self.log("val/dice_global", 2 * inter.sum() / (pred.sum() + true.sum()).clamp_min(1))
        self.log("val/n_slices", float(len(rows)))
        self.log("val/n_patients", float(n_patients))

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.model.parameters()
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay, nesterov=True)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "onecycle":
            total = int(self.trainer.estimated_stepping_batches)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=max(total, 1))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.trainer.max_epochs, 1))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": MONITOR}}


class ModelFileCallback(Callback):
    """Writes the self-describing model files ``best.pt`` (best ``val/dice_patient``) and ``last.pt``.

    Args:
        run_dir: the run folder.
        meta: what :func:`gliomaseg.checkpoint.save_checkpoint` stores beside the weights.
    """

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.meta = meta
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
        save_checkpoint(self.run_dir / "last.pt", pl_module.model, meta)
        if metrics[MONITOR] > self.best:
            self.best = metrics[MONITOR]
            save_checkpoint(self.run_dir / "best.pt", pl_module.model, meta)


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    on_gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    return "16-mixed" if on_gpu else "32-true"


def _absolute_paths(cfg: TrainConfig) -> TrainConfig:
    # The saved config (and the model file) must find index, splits and data from any folder.
    changes = {
        key: str(Path(value).expanduser().resolve())
        for key in ("data", "workdir", "index", "splits", "runs_dir")
        if (value := getattr(cfg, key)) is not None
    }
    return dataclasses.replace(cfg, **changes)


def _global_rank() -> int:
    # Lightning's ddp launcher, torchrun and SLURM re-run this command once per process.
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def _run_dir_for(cfg: TrainConfig, resume: str | None, overwrite: bool) -> Path:
    run_dir = cfg.run_dir
    if _global_rank() != 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"run folder {run_dir} exists: pass --resume to continue it, --run-name for a new one, "
                "or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def read_training_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's CSV log, joined across resumed sessions (``logs/csv``, ``logs/csv-resume1``, ...).

    A resumed session repeats the epoch that was cut short; its rows replace the earlier ones.

    Returns:
        One row per logged step/epoch (empty if the run has no CSV log).
    """
    logs = Path(run_dir) / "logs"
    parts = sorted(logs.glob("csv*/metrics.csv"), key=lambda p: _log_session(p.parent.name))
    frames: list[pd.DataFrame] = []
    for path in parts:
        frame = pd.read_csv(path)
        if frames and "epoch" in frame and frame["epoch"].notna().any():
            first = frame["epoch"].min()
            frames = [f[~(f["epoch"] >= first)] for f in frames]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _log_session(name: str) -> int:
    return int(name.rpartition("resume")[2]) if "resume" in name else 0


def _csv_version(run_dir: Path, resuming: bool) -> str:
    # Lightning's CSVLogger deletes an existing metrics.csv, so each resumed session logs beside it.
    if not resuming:
        return "csv"
    sessions = [_log_session(p.name) for p in (run_dir / "logs").glob("csv*")]
    return f"csv-resume{max(sessions, default=0) + 1}"


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
        resume: ``True`` to continue the run folder's ``checkpoints/last.ckpt``, or a path to a
            Lightning checkpoint; restores epoch, optimiser and scheduler state.
        overwrite: replace an existing run folder instead of refusing.
        callbacks: extra Lightning callbacks.

    Raises:
        ValueError: the run folder exists (and neither resume nor overwrite), or the resume
            checkpoint is missing.
    """
    cfg = _absolute_paths(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path: str | None = None
    if resume:
        ckpt_path = str(cfg.run_dir / "checkpoints" / "last.ckpt") if resume is True else str(resume)
        if not Path(ckpt_path).is_file():
            raise ValueError(f"cannot resume: {ckpt_path} does not exist")
    run_dir = _run_dir_for(cfg, ckpt_path, overwrite)

    pre = PreprocessConfig(size=cfg.size, normalisation=cfg.normalisation)
    ws = prepare(
        data=cfg.data, workdir=cfg.workdir, preprocess=pre, index_path=cfg.index_path, splits_path=cfg.splits_path
    )
    if cfg.fold >= len(ws.splits["folds"]):
        raise ValueError(f"fold={cfg.fold}: {cfg.splits_path} has {len(ws.splits['folds'])} folds")
    if _global_rank() == 0:
        save_config(cfg, run_dir / "config.yaml")

    dm = GliomaDataModule(
        ws.cache_dir,
        ws.splits,
        fold=cfg.fold,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        augment=augment_config(cfg.augment),
        tumour_fraction=cfg.tumour_fraction,
        seed=cfg.seed,
    )
    model_kwargs = {"in_channels": 3, "out_channels": 1, "features": cfg.features}
    on_cpu = cfg.accelerator == "cpu" or not torch.cuda.is_available()
    module = SegmentationModule(
        model_name=cfg.model,
        model_kwargs=model_kwargs,
        loss=cfg.loss,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        scheduler=cfg.scheduler,
        threshold=cfg.threshold,
        n_rows=len(ws.table),
        channels_last=on_cpu,
    )
    meta = {
        "model": {"name": cfg.model, "kwargs": model_kwargs},
        "preprocess": pre.to_dict(),
        "postprocess": cfg.postprocess_dict(),
        "split_id": split_id(ws.splits, cfg.fold),
        "config": cfg.to_dict(),
    }
    callbacks = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=MONITOR, mode="max", save_last=True),
        ModelFileCallback(run_dir, meta),
        LearningRateMonitor(logging_interval="epoch"),
        TQDMProgressBar(refresh_rate=10),
        *(callbacks or []),
    ]
    if cfg.early_stopping:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max", patience=cfg.early_stopping))
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=_precision(cfg),
        default_root_dir=run_dir,
        logger=[
            CSVLogger(run_dir, name="logs", version=_csv_version(run_dir, ckpt_path is not None)),
            TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=callbacks,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return run_dir
