"""Backends: a model file or an ONNX export turned into a logits function and its settings.

:class:`~gliomaseg.inference.segmenter.Segmenter` wraps what these return; keeping them apart keeps
the class small and lets each backend import its own runtime (PyTorch or onnxruntime) only when used.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.devices import cpu_has_native_bf16, resolve_device
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.fusion import LogitsFn, fold_batchnorm, graph_fused
from gliomaseg.inference.onnx_check import check_onnx_model

__all__ = ["LoadedModel", "check_output_shape", "load_onnx", "load_torch"]

#: Slices in the trial run of a loaded model (two, so that a graph that mixes up the batch axis shows).
_TRIAL_BATCH = 2


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run, with what the model file says about it.

    Attributes:
        logits_fn: maps a float32 ``B x C x h x w`` tensor (preprocessed, training size; ``C`` is
            ``preprocess.channels``) to ``B x 1 x h x w`` logits on the CPU.
        preprocess: the preprocessing the model was trained with.
        meta: the model file's metadata (everything but the weights).
        backend: ``"torchscript-onednn"``, ``"eager"`` or ``"onnxruntime"``.
    """

    logits_fn: LogitsFn
    preprocess: PreprocessConfig
    meta: dict[str, Any]
    backend: str


def check_output_shape(logits_fn: LogitsFn, path: Path, size: int, channels: int = 3) -> None:
    """Run a loaded model once on a small input and refuse it unless it gives ``B x 1 x size x size`` logits.

    The shapes a file declares can lie (an ONNX graph with a 2 x 2 max-pool appended still declares
    full-size logits) and a smaller output would be resized silently into another mask: only the
    real output of a real run is trusted.

    Args:
        logits_fn: the loaded model's function (float32 ``B x channels x size x size`` -> logits).
        path: the model file, for the message.
        size: the training size stored in the file.
        channels: the input channels its stored preprocessing gives (3, or ``3 (2K + 1)`` for 2.5D).

    Raises:
        GliomasegError: naming the file, the shape it gave and the shape expected.
    """
    expected = (_TRIAL_BATCH, 1, size, size)
    given = (_TRIAL_BATCH, channels, size, size)
    try:
        out = logits_fn(torch.zeros(given))
        shape = tuple(int(n) for n in out.shape)
        finite = bool(torch.isfinite(out).all())
    except Exception as err:  # noqa: BLE001 - any failure of a trial run means the file is unusable
        raise GliomasegError(
            f"{path}: the model fails on a {' x '.join(map(str, given))} input "
            f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); it is not a usable gliomaseg model"
        ) from None
    if shape != expected:
        raise GliomasegError(
            f"{path}: run on a {' x '.join(map(str, given))} input, the model gives "
            f"{' x '.join(map(str, shape))} instead of {' x '.join(map(str, expected))} (B x 1 x H x W at the input "
            "size, as its stored size "
            "says); its masks would be wrong, so it is refused: export or train it again"
        )
    if not finite:
        raise GliomasegError(f"{path}: the model gives NaN or infinite logits on a blank input; it is refused")


def load_torch(
    path: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 8,
    bf16: bool | None = None,
    graph_fusion: bool = True,
) -> LoadedModel:
    """A gliomaseg model file as an eval-mode PyTorch network, made fast where that is exact.

    BatchNorm is folded into the convolutions (when exact), the model runs channels-last under
    ``inference_mode``, and on the CPU it is traced to a frozen TorchScript graph with oneDNN Graph
    fusion (when that reproduces the eager logits), in bfloat16 on CPUs that compute it natively:
    the fastest combination measured by ``python -m benchmarks.run`` (docs/performance.md). Loading
    costs about half a second more for the trace and warm-up.

    Args:
        path: the model file (loaded with ``weights_only=True``).
        device: ``auto`` or a torch device string.
        batch_size: slices per call the fused graph is specialised to.
        bf16: run the network in bfloat16: a fused bf16 graph on the CPU (eager autocast without
            graph fusion or on a GPU). None (default): on where the CPU computes bf16 natively
            (AVX512-BF16/AMX) and the graph is fused, else float32. bf16 moves probabilities by
            ~1e-2 (masks agree with float32 at Dice > 0.999 on the benchmark volume).
        graph_fusion: allow the TorchScript + oneDNN Graph path on the CPU.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        GliomasegError: the file is not a gliomaseg model file, or a trial run does not give
            ``B x 1 x size x size`` logits (:func:`check_output_shape`).
    """
    from gliomaseg.checkpoint import load_model

    model, payload = load_model(path)
    preprocess = PreprocessConfig.from_dict(payload["preprocess"])
    dev = resolve_device(device)
    if bf16 is None:
        bf16 = graph_fusion and dev.type == "cpu" and cpu_has_native_bf16()
    model = fold_batchnorm(model.to(dev), preprocess.size, dev, preprocess.channels)
    channels_last = dev.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def eager_fn(images: torch.Tensor) -> torch.Tensor:
        x = images.to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x).float().cpu()

    fused = None
    if graph_fusion and dev.type == "cpu":
        if bf16:
            # A bf16 copy of the weights traced on its own: the graph then runs bf16 convolutions
            # end to end (oneDNN/AMX) instead of casting around each op as autocast does.
            bf16_model = copy.deepcopy(model).to(torch.bfloat16)
            fused = graph_fused(
                bf16_model, eager_fn, batch_size, preprocess.size, dtype=torch.bfloat16, channels=preprocess.channels
            )
        else:
            fused = graph_fused(model, eager_fn, batch_size, preprocess.size, channels=preprocess.channels)
    check_output_shape(eager_fn, Path(path), preprocess.size, preprocess.channels)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    backend = ("torchscript-onednn-bf16" if bf16 else "torchscript-onednn") if fused else "eager"
    return LoadedModel(fused or eager_fn, preprocess, meta, backend)


def load_onnx(path: str | Path, *, threads: int | None = None) -> LoadedModel:
    """A model exported by :func:`gliomaseg.inference.export.export_onnx`, run by onnxruntime on the CPU.

    Args:
        path: the ``.onnx`` file; its ``metadata_props`` hold the preprocessing and post-processing.
        threads: onnxruntime intra-op threads; default: all cores (``os.cpu_count()``), which
            measured fastest on 2 cores.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        GliomasegError: the file is missing, not ONNX, not a gliomaseg export (see
            :func:`~gliomaseg.inference.onnx_check.check_onnx_model`), or its trial run does not give
            ``B x 1 x size x size`` logits (:func:`check_output_shape`).
    """
    import onnxruntime as ort

    path = Path(path)
    if threads is not None and threads < 1:
        raise GliomasegError(f"threads={threads}: must be >= 1 (or None for all cores)")
    model_bytes, meta = check_onnx_model(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise GliomasegError(
            f"{path} is not an ONNX model onnxruntime can load ({type(err).__name__}: {err}); "
            "export one with `gliomaseg export --model MODEL --format onnx`"
        ) from err
    input_name = session.get_inputs()[0].name

    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {input_name: x})[0])

    preprocess = PreprocessConfig.from_dict(meta["preprocess"])
    check_output_shape(logits_fn, path, preprocess.size, preprocess.channels)
    return LoadedModel(logits_fn, preprocess, meta, "onnxruntime")
