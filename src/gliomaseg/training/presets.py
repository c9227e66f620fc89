"""The named training recipes (``gliomaseg train --preset NAME``): each replaces some of
:class:`~gliomaseg.training.config.TrainConfig`'s defaults; explicit flags still win over it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

#: name -> the settings it replaces (why each value: the comments and docs/accuracy.md).
PRESETS: dict[str, dict[str, Any]] = {
    # The seed's recipe at full resolution, for a CUDA GPU: 100 epochs on 16 training patients took 197 s on
    # an H200 (docs/performance.md; the full 90 could not be carried to that machine).
    "gpu": {
        "size": 256,
        "features": 32,
        "batch_size": 8,
        "loss": "bce_dice",
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "scheduler": "onecycle",
        "epochs": 100,
        "augment": "full_missing",
        "tumour_fraction": 0.5,
        "largest_component": True,
        "precision": "auto",
        "num_workers": 4,
    },
    # Chosen by measurement on 2 CPU cores: about 30 minutes of training (see docs/accuracy.md).
    "cpu": {
        "size": 128,
        "features": 16,
        "batch_size": 16,
        "loss": "bce_dice",
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "scheduler": "onecycle",
        # 3-fold cross-validation over the 76 non-test patients (docs/accuracy.md): 48 epochs 0.843
        # out-of-fold per-patient Dice vs 0.811 for 24, about 18 vs 9 minutes on 51 patients in bf16
        "epochs": 48,
        "augment": "flips_intensity_missing",
        "tumour_fraction": 0.5,
        # chosen on the validation patients (docs/accuracy.md): +0.011 per-patient Dice, no TTA cost
        "largest_component": True,
        # bf16 autocast where the CPU computes it natively (AMX/AVX512-BF16), else fp32: about 2x the
        # step here, validation Dice within seed noise of fp32 (docs/performance.md)
        "precision": "auto",
        # a loader process competes with the 2 compute threads on a 2-core machine
        "num_workers": 0,
    },
    # `gliomaseg demo`: a tiny network on 64x64 phantoms, a working model in under a minute.
    "demo": {
        "size": 64,
        "features": 8,
        "batch_size": 16,
        "loss": "bce_dice",
        "optimizer": "adamw",
        "lr": 3e-3,
        "scheduler": "onecycle",
        "epochs": 20,
        "augment": "flips",
        "tumour_fraction": 0.5,
        "largest_component": True,
        "num_workers": 0,
    },
}
