"""gliomaseg: lower-grade glioma segmentation in brain MRI with U-Net-family networks.

The public names are re-exported here and imported on first use, so ``import gliomaseg`` stays
fast (the training stack pulls in Lightning):

>>> from gliomaseg import create_model, Segmenter
>>> create_model("unet", features=8).__class__.__name__
'BudaUNet'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

try:
    __version__ = version("gliomaseg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "create_model": "gliomaseg.training.models",
    "list_models": "gliomaseg.training.models",
    "create_loss": "gliomaseg.training.losses",
    "list_losses": "gliomaseg.training.losses",
    "TrainConfig": "gliomaseg.training.config",
    "resolve_config": "gliomaseg.training.config",
    "train": "gliomaseg.training.trainer",
    "evaluate": "gliomaseg.evaluation.evaluator",
    "Segmenter": "gliomaseg.inference.segmenter",
    "load_segmenter": "gliomaseg.inference.segmenter",
    "read_volume": "gliomaseg.inference.inputs",
    "predict_inputs": "gliomaseg.inference.predict",
    "export_onnx": "gliomaseg.inference.export",
    "load_model": "gliomaseg.checkpoint",
    "PostprocessConfig": "gliomaseg.evaluation.postprocess",
    "binary_metrics": "gliomaseg.evaluation.metrics",
    "index_dataset": "gliomaseg.data.index",
    "make_splits": "gliomaseg.data.splits",
    "synthesise_dataset": "gliomaseg.data.phantoms",
    "GliomasegError": "gliomaseg.errors",
    "OutputExistsError": "gliomaseg.errors",
}

__getattr__, __dir__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_names]

if TYPE_CHECKING:
    from gliomaseg.checkpoint import load_model
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.phantoms import synthesise_dataset
    from gliomaseg.data.splits import make_splits
    from gliomaseg.errors import GliomasegError, OutputExistsError
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.evaluation.metrics import binary_metrics
    from gliomaseg.evaluation.postprocess import PostprocessConfig
    from gliomaseg.inference.export import export_onnx
    from gliomaseg.inference.inputs import read_volume
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.inference.segmenter import Segmenter, load_segmenter
    from gliomaseg.training.config import TrainConfig, resolve_config
    from gliomaseg.training.losses import create_loss, list_losses
    from gliomaseg.training.models import create_model, list_models
    from gliomaseg.training.trainer import train
