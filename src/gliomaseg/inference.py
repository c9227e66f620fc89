"""``Segmenter``: a trained model (checkpoint or ONNX) applied to whole volumes.

``evaluate`` and ``predict`` both go through :meth:`Segmenter.predict_proba`, so the two give the
same masks for the same input. Steps: the checkpoint's preprocessing (per-volume normalisation
at the input's resolution, then resize to the training size), the network in batches
(optionally with flip TTA), sigmoid, bilinear resize of the probabilities back to the input's
own size, then threshold and the configured post-processing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gliomaseg.data.preprocess import PreprocessConfig, preprocess_volume
from gliomaseg.postprocess import PostprocessConfig, flip_tta, postprocess_volume

__all__ = ["Segmenter", "load_segmenter"]

log = logging.getLogger(__name__)

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def _fold_batchnorm(model: torch.nn.Module, size: int, device: torch.device) -> torch.nn.Module:
    """The eval-mode model with BatchNorm folded into the preceding convolutions, if that is exact.

    Folding (``torch.fx`` conv-BN fusion) removes a memory pass per layer, which is a large share
    of CPU time for these small networks. Some MONAI models do not trace faithfully (shape checks
    in ``forward`` become constants), so the folded graph is only used when it reproduces the
    original logits on a random batch at the training size; otherwise the model is kept as is.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.inference_mode():
            ok = torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)
    except Exception as err:  # noqa: BLE001 - tracing failures take many forms; the model still works
        log.debug("BatchNorm folding skipped (%s: %s)", type(err).__name__, err)
        return model
    if not ok:
        log.debug("BatchNorm folding skipped: the folded graph's logits differ")
        return model
    return fused


@contextlib.contextmanager
def _onednn_fusion() -> Iterator[None]:
    """oneDNN Graph fusion for TorchScript graphs run inside, restored afterwards (the switch is global)."""
    previous = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(previous)


def _graph_fused(model: torch.nn.Module, eager_fn: LogitsFn, batch_size: int, size: int) -> LogitsFn | None:
    """A CPU logits function running ``model`` as a frozen TorchScript graph with oneDNN Graph fusion.

    oneDNN Graph fuses convolutions with their ReLU and writes into the skip concatenations, which
    removes most of the memory passes of an eager U-Net on CPU. TorchScript specialises the fused
    graph to the input shape during its first calls (each new shape costs about two slow calls), so
    the graph is warmed up here at ``batch_size x 3 x size x size`` and smaller batches (a volume's
    last chunk) are zero-padded to that shape; slices do not interact in an eval-mode network, so the
    padding does not change the real slices' logits. Other shapes go to ``eager_fn``.

    Args:
        model: eval-mode network (BatchNorm folded, channels-last) on the CPU.
        eager_fn: the eager logits function of ``model``, for inputs of other shapes.
        batch_size: slices per call the graph is specialised to.
        size: the training size (inputs are ``B x 3 x size x size``).

    Returns:
        The logits function, or None when tracing fails, oneDNN Graph is not available in this torch
        build, or the fused graph's logits differ from the eager model's (atol/rtol 1e-4).
    """
    example = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    example = example.contiguous(memory_format=torch.channels_last)
    try:
        # TorchScript is deprecated (torch 2.13 warns) but is the only way to oneDNN Graph without a
        # compile step of many seconds (torch.compile); if a later torch drops it, the except below
        # falls back to the eager model.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            graph = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        with torch.inference_mode(), _onednn_fusion():
            for _ in range(3):  # profiling runs, then the fused plan
                fused = graph(example)
            eager = model(example)
    except Exception as err:  # noqa: BLE001 - tracing and fusion fail in many ways; eager still works
        log.debug("oneDNN Graph fusion skipped (%s: %s)", type(err).__name__, err)
        return None
    if fused.shape != eager.shape or not torch.allclose(fused, eager, atol=1e-4, rtol=1e-4):
        log.debug("oneDNN Graph fusion skipped: the fused graph's logits differ from eager")
        return None

    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        if n > batch_size or tuple(images.shape[1:]) != (3, size, size):
            return eager_fn(images)
        if n < batch_size:
            images = torch.cat([images, images.new_zeros((batch_size - n, *images.shape[1:]))])
        x = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _onednn_fusion():
            return graph(x)[:n].float()

    return logits_fn


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


class Segmenter:
    """Apply a trained network to volumes.

    Args:
        logits_fn: maps a float32 ``B x 3 x h x w`` tensor (preprocessed, training size) to
            ``B x 1 x h x w`` logits.
        preprocess: the preprocessing the model was trained with.
        postprocess: threshold, component filtering, TTA.
        batch_size: slices per forward pass.
        meta: the checkpoint's metadata (model, split id, metrics...), for reports.
        backend: how the network runs, for reports: ``"torchscript-onednn"``, ``"eager"``,
            ``"onnxruntime"`` or ``"custom"`` (a ``logits_fn`` given directly).
    """

    def __init__(
        self,
        logits_fn: LogitsFn,
        preprocess: PreprocessConfig,
        postprocess: PostprocessConfig | None = None,
        *,
        batch_size: int = 16,
        meta: dict[str, Any] | None = None,
        backend: str = "custom",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        self.logits_fn = logits_fn
        self.preprocess = preprocess
        self.postprocess = postprocess or PostprocessConfig()
        self.batch_size = batch_size
        self.meta = meta or {}
        self.backend = backend

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        postprocess: PostprocessConfig | None = None,
        batch_size: int = 8,
        bf16: bool = False,
        graph_fusion: bool = True,
    ) -> Segmenter:
        """Load a ``best.pt``/``last.pt`` model file (``weights_only=True``).

        The network runs in eval mode with BatchNorm folded into the convolutions (when exact),
        channels-last and under ``inference_mode``; on the CPU it is also traced to a frozen
        TorchScript graph with oneDNN Graph fusion (when that reproduces the eager logits). This is
        the fastest correct combination measured by ``benchmarks/inference_speed.py`` on 2 cores
        (about 2x plain eager batch-1 end to end); loading costs about half a second more for the
        trace and warm-up.

        Args:
            path: the model file.
            device: ``auto`` (CUDA, else MPS, else CPU) or a torch device string.
            postprocess: overrides the checkpoint's stored post-processing.
            batch_size: slices per forward pass (8 measured fastest on a 2-core CPU; 16 and 40 were
                slower, 1 much slower).
            bf16: bfloat16 autocast. Off by default: on CPUs with AVX512-BF16 but no AMX it measured
                slower than float32, and it changes probabilities slightly. Runs the eager model.
            graph_fusion: on the CPU, run the network as a TorchScript graph fused by oneDNN Graph
                (float32, same logits within 1e-4, checked at load); False keeps the eager model.
        """
        from gliomaseg.checkpoint import load_model

        model, payload = load_model(path)
        preprocess = PreprocessConfig.from_dict(payload["preprocess"])
        dev = _resolve_device(device)
        model = _fold_batchnorm(model.to(dev), preprocess.size, dev)
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
        if graph_fusion and dev.type == "cpu" and not bf16:
            fused = _graph_fused(model, eager_fn, batch_size, preprocess.size)
        logits_fn = fused or eager_fn
        post = postprocess or PostprocessConfig.from_dict(payload.get("postprocess", {}))
        meta = {k: v for k, v in payload.items() if k != "state_dict"}
        backend = "torchscript-onednn" if fused else "eager"
        return cls(logits_fn, preprocess, post, batch_size=batch_size, meta=meta, backend=backend)

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        postprocess: PostprocessConfig | None = None,
        batch_size: int = 8,
    ) -> Segmenter:
        """Load a model exported by :func:`gliomaseg.export.export_onnx` and run it with onnxruntime (CPU).

        Args:
            path: the ``.onnx`` file; its ``metadata_props`` hold the preprocessing and post-processing.
            threads: onnxruntime intra-op threads; default: all cores of this machine
                (``os.cpu_count()``), which measured fastest on 2 cores (see ``benchmarks/``).
            postprocess: overrides the stored post-processing.
            batch_size: slices per ``session.run``.

        Raises:
            ValueError: the file is missing, not ONNX, or lacks the gliomaseg metadata.
        """
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ONNX model {path} does not exist")
        if threads is not None and threads < 1:
            raise ValueError(f"threads={threads}: must be >= 1 (or None for all cores)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(
                f"{path} is not an ONNX model onnxruntime can load ({type(err).__name__}: {err}); "
                "export one with `gliomaseg export CHECKPOINT --format onnx`"
            ) from err
        props = session.get_modelmeta().custom_metadata_map
        if "preprocess" not in props:
            raise ValueError(f"{path} has no gliomaseg metadata (preprocess); export it with `gliomaseg export`")
        meta: dict[str, Any] = {}
        for key, value in props.items():
            try:
                meta[key] = json.loads(value)
            except json.JSONDecodeError:
                meta[key] = value
        input_name = session.get_inputs()[0].name

        def logits_fn(images: torch.Tensor) -> torch.Tensor:
            x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
            return torch.from_numpy(session.run(None, {input_name: x})[0])

        post = postprocess or PostprocessConfig.from_dict(meta.get("postprocess") or {})
        return cls(
            logits_fn,
            PreprocessConfig.from_dict(meta["preprocess"]),
            post,
            batch_size=batch_size,
            meta=meta,
            backend="onnxruntime",
        )

    def with_postprocess(self, **changes: Any) -> Segmenter:
        """A copy with some post-processing settings changed (e.g. ``tta=True``)."""
        return Segmenter(
            self.logits_fn,
            self.preprocess,
            replace(self.postprocess, **changes),
            batch_size=self.batch_size,
            meta=self.meta,
            backend=self.backend,
        )

    def predict_proba(self, volume: np.ndarray) -> np.ndarray:
        """Tumour probabilities for a volume.

        Args:
            volume: ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast), one patient's slices
                in order; a single slice is a volume of one (normalisation statistics then come from
                that slice alone).

        Returns:
            ``S x H x W`` float32 probabilities at the input's own resolution.

        Raises:
            ValueError: wrong shape or dtype.
        """
        if volume.ndim == 3 and volume.shape[-1] == 3:
            volume = volume[None]
        if volume.ndim != 4 or volume.shape[-1] != 3 or volume.dtype != np.uint8:
            raise ValueError(
                f"expected an S x H x W x 3 uint8 volume (pre-contrast, FLAIR, post-contrast), "
                f"got shape {volume.shape} dtype {volume.dtype}"
            )
        height, width = volume.shape[1:3]
        images = preprocess_volume(volume, self.preprocess)  # S x h x w x 3 float32
        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        probs = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            tta = self.postprocess.tta
            p = flip_tta(self.logits_fn, chunk) if tta else torch.sigmoid(self.logits_fn(chunk))
            if p.shape[-2:] != (height, width):
                p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
            probs.append(p[:, 0])
        return torch.cat(probs).numpy().astype(np.float32, copy=False)

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        """``S x H x W x 3`` uint8 volume -> ``S x H x W`` bool mask after post-processing."""
        return postprocess_volume(self.predict_proba(volume), self.postprocess)


def load_segmenter(
    path: str | Path,
    *,
    device: str = "auto",
    postprocess: PostprocessConfig | None = None,
    batch_size: int | None = None,
    bf16: bool | None = None,
    threads: int | None = None,
    graph_fusion: bool | None = None,
) -> Segmenter:
    """A :class:`Segmenter` from either a ``.onnx`` export or a ``best.pt``/``last.pt`` model file.

    Args:
        path: ``*.onnx`` (onnxruntime, CPU) or a gliomaseg model file (PyTorch).
        device: PyTorch device for model files; an ONNX model runs on the CPU (``auto``/``cpu`` only).
        postprocess: overrides the stored post-processing.
        batch_size: slices per forward pass; None takes the backend's default.
        bf16: bfloat16 autocast (model files only); None takes the default.
        threads: onnxruntime intra-op threads (ONNX only); None = all cores.
        graph_fusion: TorchScript + oneDNN Graph on the CPU (model files only); None takes the
            default (on). Off saves about 0.45 s of loading, which is more than it gains below ~800 slices.

    Raises:
        ValueError: options that do not apply to the file's backend, or an unreadable file.
    """
    path = Path(path)
    extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if path.suffix.lower() == ".onnx":
        if bf16:
            raise ValueError(f"{path}: bf16 applies to PyTorch model files; the ONNX model runs in float32")
        if graph_fusion is not None:
            raise ValueError(f"{path}: graph_fusion applies to PyTorch model files, not to ONNX models")
        if device not in ("auto", "cpu"):
            raise ValueError(f"{path}: ONNX models run on the CPU; got device={device!r} (use auto or cpu)")
        return Segmenter.from_onnx(path, threads=threads, postprocess=postprocess, **extra)
    if threads is not None:
        raise ValueError(f"{path}: threads applies to ONNX models; use torch.set_num_threads for model files")
    if bf16 is not None:
        extra["bf16"] = bf16
    if graph_fusion is not None:
        extra["graph_fusion"] = graph_fusion
    return Segmenter.from_checkpoint(path, device=device, postprocess=postprocess, **extra)
