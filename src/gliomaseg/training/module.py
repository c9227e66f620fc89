"""The LightningModule: a registered network, its loss, optimiser and scheduler, and validation.

Validation reports the **per-patient (volume) Dice** at the training resolution: for each
validation patient, ``2|P∩T| / (|P|+|T|)`` over all of its slices, then the mean over patients.
It selects the best checkpoint. Counts are kept per slice row and combined across processes
with a maximum, so under DDP each slice counts once even where the distributed sampler pads
a shard with repeated slices.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from gliomaseg.training.losses import create_loss
from gliomaseg.training.models import create_model

__all__ = ["MONITOR", "SegmentationModule"]

MONITOR = "val/dice_patient"
"""The metric that selects ``best.pt``: mean per-patient (volume) Dice on the validation patients."""


class SegmentationModule(L.LightningModule):
    """A segmentation network, its loss and optimiser.

    Args:
        model_name: a name from :func:`gliomaseg.training.models.list_models`.
        model_kwargs: keyword arguments for :func:`gliomaseg.training.models.create_model`.
        loss: a name from :func:`gliomaseg.training.losses.list_losses`.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate (the peak rate for ``onecycle``).
        weight_decay: weight decay.
        scheduler: ``none``, ``onecycle`` (per step), ``cosine`` (per epoch) or ``plateau``.
        threshold: probability threshold for the validation masks.
        n_rows: number of slice rows in the cache (size of the per-slice validation buffer).
        channels_last: use channels-last memory format (faster convolutions on CPU and CUDA).
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
        """``B x C x H x W`` images (``C`` = 3, or ``3 (2K + 1)`` with context slices) -> ``B x 1 x H x W`` logits."""
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

    def _fused_optimizer(self) -> bool:
        # One fused kernel for the whole Adam update instead of a loop of per-tensor ops: 2-3% of a
        # bf16 step of the cpu preset here (docs/performance.md). Fused Adam exists for CPU and CUDA.
        return self.device.type in ("cpu", "cuda")

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.model.parameters()
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=self._fused_optimizer())
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=self._fused_optimizer())
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
