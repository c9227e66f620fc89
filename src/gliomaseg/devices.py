"""Which device and which precision this machine should run on.

Shared by training (Lightning's precision) and inference (the network's dtype), and light: it
imports only torch, so the inference path stays free of Lightning.
"""

from __future__ import annotations

import torch

__all__ = ["cpu_has_native_bf16", "resolve_device"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 pays off.

    Example:
        >>> isinstance(cpu_has_native_bf16(), bool)
        True
    """
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # the probes are private to torch and may move
        return False


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA, else Apple MPS, else CPU; any other string is a torch device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)
