"""The smallest real training configuration the training tests share (phantoms, 2 epochs, 32 px)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gliomaseg.training.config import TrainConfig, resolve_config


def tiny_config(data: Path, workdir: Path, runs_dir: Path, **overrides: Any) -> TrainConfig:
    """A resolved config training a 4-feature U-Net for 2 epochs at 32 x 32 on ``data``.

    Args:
        data: a kaggle_3m folder (the phantoms fixture).
        workdir: where the index, splits and cache go.
        runs_dir: where the run folder goes.
        overrides: any other settings (e.g. ``context_slices=1``).
    """
    values: dict[str, Any] = {
        "data": str(data),
        "workdir": str(workdir),
        "runs_dir": str(runs_dir),
        "size": 32,
        "features": 4,
        "batch_size": 4,
        "epochs": 2,
        "num_workers": 0,
        "loss": "bce_dice",
        "lr": 1e-3,
    }
    return resolve_config({**values, **overrides})
