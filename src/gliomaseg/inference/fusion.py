"""CPU speed-ups for an eval-mode network: BatchNorm folding and a oneDNN-Graph-fused TorchScript graph.

Both are used only where they reproduce the eager model's logits (checked at load); otherwise
the eager model runs. Measured by ``python -m benchmarks.run`` (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

import torch

__all__ = ["LogitsFn", "fold_batchnorm", "graph_fused"]

log = logging.getLogger(__name__)

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def fold_batchnorm(model: torch.nn.Module, size: int, device: torch.device, channels: int = 3) -> torch.nn.Module:
    """The eval-mode model with BatchNorm folded into the preceding convolutions, if that is exact.

    Folding (``torch.fx`` conv-BN fusion) removes a memory pass per layer, which is a large share
    of CPU time for these small networks. Some MONAI models do not trace faithfully (shape checks
    in ``forward`` become constants), so the folded graph is only used when it reproduces the
    original logits on a random ``2 x channels x size x size`` batch (the training size and the input
    channels); otherwise the model is kept as is.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model)
        x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
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


def graph_fused(
    model: torch.nn.Module,
    eager_fn: LogitsFn,
    batch_size: int,
    size: int,
    dtype: torch.dtype = torch.float32,
    channels: int = 3,
) -> LogitsFn | None:
    """A CPU logits function running ``model`` as a frozen TorchScript graph with oneDNN Graph fusion.

    oneDNN Graph fuses convolutions with their ReLU and writes into the skip concatenations, which
    removes most of the memory passes of an eager U-Net on CPU. TorchScript specialises the fused
    graph to the input shape during its first calls (each new shape costs about two slow calls), so
    the graph is warmed up here at ``batch_size x channels x size x size`` and smaller batches (a volume's
    last chunk) are zero-padded to that shape; slices do not interact in an eval-mode network, so the
    padding does not change the real slices' logits. Other shapes go to ``eager_fn``.

    Args:
        model: eval-mode network (BatchNorm folded, channels-last) on the CPU.
        eager_fn: the eager logits function of ``model``, for inputs of other shapes.
        batch_size: slices per call the graph is specialised to.
        size: the training size (inputs are ``B x channels x size x size``).
        dtype: the graph's dtype: ``float32``, or ``bfloat16`` (``model`` must already hold bf16
            weights; inputs are cast on the way in and logits come back as float32).
        channels: the input channels (3, or ``3 (2K + 1)`` for a 2.5D model).

    Returns:
        The logits function, or None when tracing fails, oneDNN Graph is not available in this torch
        build, or the fused graph's logits differ from the eager model's (atol/rtol 1e-4 in float32,
        2e-2 in bfloat16: the same bf16 arithmetic in another order).
    """
    example = torch.randn(batch_size, channels, size, size, generator=torch.Generator().manual_seed(0))
    example = example.to(dtype).contiguous(memory_format=torch.channels_last)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
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
    if fused.shape != eager.shape or not torch.allclose(fused.float(), eager.float(), atol=tolerance, rtol=tolerance):
        log.debug("oneDNN Graph fusion skipped: the fused graph's logits differ from eager")
        return None

    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        if n > batch_size or tuple(images.shape[1:]) != (channels, size, size):
            return eager_fn(images)
        if n < batch_size:
            images = torch.cat([images, images.new_zeros((batch_size - n, *images.shape[1:]))])
        x = images.to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _onednn_fusion():
            return graph(x)[:n].float()

    return logits_fn
