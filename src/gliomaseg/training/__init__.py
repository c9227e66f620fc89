"""Training stage: settings and presets, the model and loss registries, the LightningModule, ``train()``.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "OPTIMIZERS": "gliomaseg.training.config",
    "PRECISIONS": "gliomaseg.training.config",
    "PRESETS": "gliomaseg.training.presets",
    "SCHEDULERS": "gliomaseg.training.config",
    "TrainConfig": "gliomaseg.training.config",
    "load_config_file": "gliomaseg.training.config",
    "resolve_config": "gliomaseg.training.config",
    "save_config": "gliomaseg.training.config",
    "Registry": "gliomaseg.training.registry",
    "MODELS": "gliomaseg.training.models",
    "SIZE_MULTIPLE": "gliomaseg.training.models",
    "BudaUNet": "gliomaseg.training.models",
    "UNetPlusPlus": "gliomaseg.training.models",
    "check_spatial_size": "gliomaseg.training.models",
    "count_parameters": "gliomaseg.training.models",
    "create_model": "gliomaseg.training.models",
    "list_models": "gliomaseg.training.models",
    "LOSSES": "gliomaseg.training.losses",
    "BinarySegmentationLoss": "gliomaseg.training.losses",
    "FocalTverskyLoss": "gliomaseg.training.losses",
    "create_loss": "gliomaseg.training.losses",
    "list_losses": "gliomaseg.training.losses",
    "MONITOR": "gliomaseg.training.module",
    "SegmentationModule": "gliomaseg.training.module",
    "BEST_ON_VALIDATION": "gliomaseg.checkpoint",
    "LAST_EPOCH": "gliomaseg.checkpoint",
    "LAST_EPOCH_NO_VALIDATION": "gliomaseg.checkpoint",
    "ModelFileCallback": "gliomaseg.training.trainer",
    "resolve_precision": "gliomaseg.training.trainer",
    "train": "gliomaseg.training.trainer",
    "csv_version": "gliomaseg.training.logs",
    "log_session": "gliomaseg.training.logs",
    "read_training_log": "gliomaseg.training.logs",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.checkpoint import BEST_ON_VALIDATION, LAST_EPOCH, LAST_EPOCH_NO_VALIDATION
    from gliomaseg.training.config import (
        OPTIMIZERS,
        PRECISIONS,
        SCHEDULERS,
        TrainConfig,
        load_config_file,
        resolve_config,
        save_config,
    )
    from gliomaseg.training.logs import csv_version, log_session, read_training_log
    from gliomaseg.training.losses import LOSSES, BinarySegmentationLoss, FocalTverskyLoss, create_loss, list_losses
    from gliomaseg.training.models import (
        MODELS,
        SIZE_MULTIPLE,
        BudaUNet,
        UNetPlusPlus,
        check_spatial_size,
        count_parameters,
        create_model,
        list_models,
    )
    from gliomaseg.training.module import MONITOR, SegmentationModule
    from gliomaseg.training.presets import PRESETS
    from gliomaseg.training.registry import Registry
    from gliomaseg.training.trainer import (
        ModelFileCallback,
        resolve_precision,
        train,
    )
