"""Export a gliomaseg model file to ONNX for deployment with onnxruntime.

The graph has one input ``image`` (``B x C x size x size`` float32, preprocessed as stored: ``C`` is 3,
or ``3 (2K + 1)`` for a 2.5D model whose stored preprocessing has ``context_slices = K``) and one
output ``logits`` (``B x 1 x size x size``); the batch axis is dynamic. The checkpoint's
metadata travel inside the file as ONNX ``metadata_props`` (each value a JSON string), so
:meth:`gliomaseg.inference.Segmenter.from_onnx` applies the same preprocessing and
post-processing as the PyTorch model file:

- ``format``: ``"gliomaseg-onnx/1"``
- ``model``, ``preprocess``, ``postprocess``, ``split_id``, ``package_version``, ``epoch``, ``selection``,
  ``train_patients``, ``val_patients``,
  ``metrics``: copied from the model file (absent keys are left out).

Every export is checked: onnxruntime and PyTorch run the same random batch and the largest
absolute difference of the logits must stay within ``atol`` (1e-3).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.inference.onnx_check import ONNX_FORMAT
from gliomaseg.utils import atomic_write

__all__ = ["ONNX_FORMAT", "AveragedProbabilities", "ExportResult", "default_onnx_path", "export_onnx"]

log = logging.getLogger(__name__)

_META_KEYS = (
    "model",
    "preprocess",
    "postprocess",
    "orientation",
    "split_id",
    "package_version",
    "epoch",
    "metrics",
    "ensemble",
    "selection",
    "train_patients",
    "val_patients",
)


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


class AveragedProbabilities(nn.Module):
    """An ensemble as one network: the logit of the members' averaged probabilities.

    The ONNX graph keeps the single-model contract (``image`` in, ``logits`` out), so a Segmenter
    applies its sigmoid and gets the averaged probabilities back (clamped to [1e-7, 1 - 1e-7]).

    Args:
        members: networks mapping ``B x C x H x W`` to logits ``B x 1 x H x W``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` images -> ``B x 1 x H x W`` logits of the averaged probabilities."""
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(dim=0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)


def _load_for_export(checkpoints: Sequence[Path]) -> tuple[nn.Module, dict[str, Any], PreprocessConfig]:
    """The network to export (an :class:`AveragedProbabilities` for several), its metadata and preprocessing."""
    from gliomaseg.checkpoint import load_model

    loaded = [load_model(c) for c in checkpoints]
    payload = dict(loaded[0][1])
    # read through PreprocessConfig, so that a file written before a setting existed equals one holding its default
    settings = [PreprocessConfig.from_dict(p["preprocess"]) for _, p in loaded]
    if len(set(settings)) > 1:
        shown = sorted({f"size {c.size}, {c.normalisation}, context_slices {c.context_slices}" for c in settings})
        raise GliomasegError(
            f"the ensemble's members were trained with different preprocessing ({'; '.join(shown)}); one ONNX "
            "graph needs one input: export them separately and ensemble with `predict --model A.onnx B.onnx`"
        )
    if len(loaded) == 1:
        model = loaded[0][0]
    else:
        model = AveragedProbabilities([m for m, _ in loaded])
        payload["split_id"] = [p.get("split_id") for _, p in loaded]
        payload["ensemble"] = [str(c) for c in checkpoints]
    return model.float().eval(), payload, settings[0]


def default_onnx_path(checkpoints: Sequence[str | Path]) -> Path:
    """``<stem>.onnx`` of a single model file, ``ensemble.onnx`` for several, in the current folder."""
    return Path("ensemble.onnx" if len(checkpoints) > 1 else f"{Path(checkpoints[0]).stem}.onnx")


def export_onnx(
    checkpoint: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    opset: int = 17,
    overwrite: bool = False,
    atol: float = 1e-3,
    check_batch: int = 2,
    seed: int = 0,
) -> ExportResult:
    """Export a model file (or an ensemble of several) to ONNX and check it against PyTorch with onnxruntime.

    Args:
        checkpoint: a gliomaseg model file (``best.pt``/``last.pt``), or several with the same
            preprocessing: one graph returning the logit of their averaged probabilities.
        out: target ``.onnx`` file; default: ``<model file stem>.onnx`` (an ensemble's: ``ensemble.onnx``)
            in the current folder, never beside the model file (a bundled model's is inside the package).
        opset: ONNX opset version (>= 13).
        overwrite: replace an existing ``out``.
        atol: largest allowed absolute logit difference between onnxruntime and PyTorch.
        check_batch: slices in the random check batch (> 1 also exercises the dynamic batch axis,
            since the graph is traced with batch 1).
        seed: seed of the random check batch.

    Returns:
        An :class:`ExportResult` (path, max abs difference, opset).

    Raises:
        GliomasegError: an unreadable checkpoint, a target that does not end in ``.onnx``, members
            with different preprocessing, or outputs that differ by more than ``atol`` (nothing is
            written then).
        OutputExistsError: an existing ``out`` without ``overwrite``.

    Example:
        >>> export_onnx("runs/unet__bce_dice__fold0/best.pt").path  # doctest: +SKIP
        PosixPath('best.onnx')
    """
    checkpoints = [Path(checkpoint)] if isinstance(checkpoint, str | Path) else [Path(c) for c in checkpoint]
    target = Path(out) if out is not None else default_onnx_path(checkpoints)
    if target.suffix.lower() != ".onnx":
        raise GliomasegError(f"export target {target} must end in .onnx")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    if opset < 13:
        raise GliomasegError(f"opset={opset}: use 13 or newer (dynamic batch axes need it)")
    model, payload, preprocess = _load_for_export(checkpoints)
    shape = (preprocess.channels, preprocess.size, preprocess.size)
    data = _to_onnx(model, payload, shape, opset)
    diff = _max_difference(model, data, shape, check_batch, seed)
    if not diff <= atol:
        raise GliomasegError(
            f"ONNX export of {checkpoints[0]} differs from PyTorch by {diff:.3g} (> {atol}); "
            f"try another --opset (got {opset})"
        )
    atomic_write(target, lambda p: p.write_bytes(data))
    # debug only: the caller reports the result (the command prints one line of it)
    log.debug("exported %s -> %s (opset %d, max abs diff %.3g)", ", ".join(map(str, checkpoints)), target, opset, diff)
    return ExportResult(path=target, max_abs_diff=diff, opset=opset)


def _to_onnx(model: nn.Module, payload: dict[str, Any], shape: tuple[int, int, int], opset: int) -> bytes:
    """The ONNX bytes of ``model`` traced on one ``shape`` (``C x H x W``) image, with ``payload``'s metadata."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but still the fast, reliable path for
        # these static-shape convolutional graphs; its tracer warnings concern MONAI's shape
        # checks, which are constant for a fixed training size.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, *shape),),
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
    return proto.SerializeToString()


def _max_difference(model: nn.Module, data: bytes, shape: tuple[int, int, int], check_batch: int, seed: int) -> float:
    """Largest |onnxruntime - PyTorch| logit difference on a random batch of ``shape`` (``C x H x W``) images."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(check_batch, *shape, generator=generator)
    with torch.no_grad():
        expected = model(batch).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": batch.numpy()})[0]
    return float(np.max(np.abs(got - expected)))
