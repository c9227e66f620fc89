"""Export a gliomaseg model file to ONNX for deployment with onnxruntime.

The graph has one input ``image`` (``B x 3 x size x size`` float32, preprocessed as stored) and
one output ``logits`` (``B x 1 x size x size``); the batch axis is dynamic. The checkpoint's
metadata travel inside the file as ONNX ``metadata_props`` (each value a JSON string), so
:meth:`gliomaseg.inference.Segmenter.from_onnx` applies the same preprocessing and
post-processing as the PyTorch model file:

- ``format``: ``"gliomaseg-onnx/1"``
- ``model``, ``preprocess``, ``postprocess``, ``split_id``, ``package_version``, ``epoch``,
  ``metrics``: copied from the model file (absent keys are left out).

Every export is checked: onnxruntime and PyTorch run the same random batch and the largest
absolute difference of the logits must stay within ``atol`` (1e-3).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.inference.onnx_check import ONNX_FORMAT
from gliomaseg.utils import atomic_write

__all__ = ["ONNX_FORMAT", "ExportResult", "export_onnx"]

log = logging.getLogger(__name__)

_META_KEYS = ("model", "preprocess", "postprocess", "split_id", "package_version", "epoch", "metrics")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        max_abs_diff: largest ``|onnxruntime - PyTorch|`` logit difference on the check batch.
        opset: the ONNX opset used.
    """

    path: Path
    max_abs_diff: float
    opset: int


def _metadata(payload: dict[str, Any]) -> dict[str, str]:
    meta = {"format": ONNX_FORMAT}
    for key in _META_KEYS:
        if key in payload:
            meta[key] = json.dumps(payload[key], default=str)
    return meta


def export_onnx(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    opset: int = 17,
    overwrite: bool = False,
    atol: float = 1e-3,
    check_batch: int = 2,
    seed: int = 0,
) -> ExportResult:
    """Export a model file to ONNX and check it against PyTorch with onnxruntime.

    Args:
        checkpoint: a gliomaseg model file (``best.pt``/``last.pt``).
        out: target ``.onnx`` file; default: the checkpoint's path with suffix ``.onnx``.
        opset: ONNX opset version (>= 13).
        overwrite: replace an existing ``out``.
        atol: largest allowed absolute logit difference between onnxruntime and PyTorch.
        check_batch: slices in the random check batch (> 1 also exercises the dynamic batch axis,
            since the graph is traced with batch 1).
        seed: seed of the random check batch.

    Returns:
        An :class:`ExportResult` (path, max abs difference, opset).

    Raises:
        GliomasegError: an unreadable checkpoint, an existing ``out`` without ``overwrite``, a target
            that does not end in ``.onnx``, or outputs that differ by more than ``atol`` (nothing is
            written then).
    """
    import onnx
    import onnxruntime as ort

    from gliomaseg.checkpoint import load_model
    from gliomaseg.data.normalise import PreprocessConfig

    checkpoint = Path(checkpoint)
    target = Path(out) if out is not None else checkpoint.with_suffix(".onnx")
    if target.suffix.lower() != ".onnx":
        raise GliomasegError(f"export target {target} must end in .onnx")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
    if opset < 13:
        raise GliomasegError(f"opset={opset}: use 13 or newer (dynamic batch axes need it)")

    model, payload = load_model(checkpoint)
    model = model.float().eval()
    size = PreprocessConfig.from_dict(payload["preprocess"]).size
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but still the fast, reliable path for
        # these static-shape convolutional graphs; its tracer warnings concern MONAI's shape
        # checks, which are constant for a fixed training size.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in _metadata(payload).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(check_batch, 3, size, size, generator=generator)
    with torch.no_grad():
        expected = model(batch).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": batch.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= atol:
        raise GliomasegError(
            f"ONNX export of {checkpoint} differs from PyTorch by {diff:.3g} (> {atol}); "
            f"try another --opset (got {opset})"
        )
    atomic_write(target, lambda p: p.write_bytes(data))
    log.info("exported %s -> %s (opset %d, max abs diff %.3g)", checkpoint, target, opset, diff)
    return ExportResult(path=target, max_abs_diff=diff, opset=opset)
