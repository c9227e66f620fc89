"""gliomaseg: lower-grade glioma segmentation in brain MRI with U-Net-family networks.

The public names are re-exported here and imported on first use, so ``import gliomaseg`` stays
fast (the training stack pulls in Lightning):

>>> from gliomaseg import create_model, Segmenter
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "gliomaseg.models",
    "list_models": "gliomaseg.models",
    "create_loss": "gliomaseg.losses",
    "list_losses": "gliomaseg.losses",
    "TrainConfig": "gliomaseg.config",
    "resolve_config": "gliomaseg.config",
    "train": "gliomaseg.training",
    "evaluate": "gliomaseg.evaluation",
    "Segmenter": "gliomaseg.inference",
    "load_segmenter": "gliomaseg.inference",
    "predict_inputs": "gliomaseg.predict",
    "export_onnx": "gliomaseg.export",
    "load_model": "gliomaseg.checkpoint",
    "PostprocessConfig": "gliomaseg.postprocess",
    "binary_metrics": "gliomaseg.metrics",
    "index_dataset": "gliomaseg.data.index",
    "make_splits": "gliomaseg.data.splits",
    "synthesise_dataset": "gliomaseg.data.phantoms",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gliomaseg' has no attribute {name!r}")
