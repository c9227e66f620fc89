"""Bounds of the training settings: YAML without alias bombs, a range for every number, and the
memory a model would need, refused before anything is allocated.

A settings file may come from someone else. A 1.3 KB YAML "billion laughs" (anchors aliased into
each other) aliased into ``lr`` made the settings check print the expanded value, growing memory
without end; ``features = 100000000`` passed the checks and failed inside PyTorch (or exhausted
memory). :class:`TrainConfig.validate <gliomaseg.training.config.TrainConfig.validate>` uses what
is here, so each rule lives once.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
from typing import Any

import yaml

from gliomaseg.errors import GliomasegError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_ALIASES",
    "RANGES",
    "check_memory",
    "check_ranges",
    "estimate_training_bytes",
    "load_yaml_bounded",
    "machine_memory_bytes",
    "short_repr",
]

#: A settings file is a few hundred bytes; anything over this is not one.
MAX_CONFIG_BYTES = 1024 * 1024
#: YAML aliases (``*name``) allowed in a settings file: none is needed, a few are harmless.
MAX_YAML_ALIASES = 16
#: Inclusive ``(low, high)`` of the numeric settings (the low ends are the ones checked before; the
#: high ends are far beyond any sensible run and keep a typo from reaching PyTorch). ``lr`` has no
#: upper end: any finite rate > 0 costs no memory, and a diverging one is stopped by the training's
#: divergence check (tests/training/test_resume.py trains at 1e30 on purpose); ``threshold`` and
#: ``tumour_fraction`` are checked in (0, 1) by their own configs.
RANGES: dict[str, tuple[float, float]] = {
    "fold": (0, 99),
    "size": (32, 2048),
    "features": (1, 512),
    "epochs": (1, 100_000),
    "batch_size": (1, 4096),
    "early_stopping": (0, 100_000),
    "min_size": (0, 10**9),
    "devices": (1, 1024),
    "num_nodes": (1, 1024),
    "num_workers": (0, 256),
    "seed": (0, 2**32 - 1),
    "weight_decay": (0.0, 10.0),
    "limit_train_batches": (0.0, 10**9),
    "limit_val_batches": (0.0, 10**9),
}
#: Bytes per parameter while training with Adam: the weight, its gradient and two moment estimates (float32).
_BYTES_PER_PARAMETER = 16
#: Bytes per activation value: float32, kept for the backward pass and its gradient.
_BYTES_PER_ACTIVATION = 8

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 4, 4, 2


def short_repr(value: Any) -> str:
    """``repr`` bounded in length and depth: a hostile value (an alias bomb) is never expanded in a message."""
    return _REPR.repr(value)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader counting aliases, so that a file of nested aliases is refused while composed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(
                    f"more than {MAX_YAML_ALIASES} aliases (*name); a settings file needs none: write the values out"
                )
        return super().compose_node(parent, index)


def load_yaml_bounded(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load``, refusing more than :data:`MAX_YAML_ALIASES` aliases.

    Raises:
        yaml.YAMLError: invalid YAML, or too many aliases.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_ranges(values: dict[str, Any]) -> None:
    """Refuse any numeric setting outside :data:`RANGES`.

    Raises:
        GliomasegError: ``name=value: must be in [low, high]``.
    """
    for name, (low, high) in RANGES.items():
        value = values.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
            raise GliomasegError(f"{name}={short_repr(value)}: must be in [{low:g}, {high:g}]")


def machine_memory_bytes(accelerator: str = "auto") -> int | None:
    """The memory a run would train in: the first GPU's (accelerator ``gpu``/``auto`` with CUDA), else
    the machine's physical memory; None when unknown."""
    if accelerator in ("gpu", "cuda", "auto"):
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.get_device_properties(0).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_training_bytes(
    model: str, features: int, size: int, batch_size: int, in_channels: int = 3
) -> tuple[int, int, int]:
    """Memory to train ``model`` on ``batch_size`` slices of ``size`` x ``size``, without allocating it.

    The network is built on PyTorch's ``meta`` device (shapes only, no storage) and run once there:
    its parameters are counted exactly, and its activations as the sum of every module's output.
    ``in_channels`` is the input's channel count (``3 (2K + 1)`` for a 2.5D model).

    Returns:
        ``(bytes, parameters, activation values per slice)``; bytes = parameters x 16 (weight,
        gradient, two Adam moments) + activations x batch x 8 (kept for backward, and its gradient).
    """
    import torch

    from gliomaseg.training.models import create_model

    with torch.device("meta"):
        net = create_model(model, in_channels=in_channels, features=features)
    parameters = sum(p.numel() for p in net.parameters())
    activations = 0

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal activations
        if isinstance(output, torch.Tensor):
            activations += output.numel()

    handles = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(torch.empty(1, in_channels, size, size, device="meta"))
    except Exception:  # noqa: BLE001 - a model that cannot run on meta: its parameters alone are counted
        activations = 0
    finally:
        for handle in handles:
            handle.remove()
    total = parameters * _BYTES_PER_PARAMETER + activations * batch_size * _BYTES_PER_ACTIVATION
    return total, parameters, activations


def check_memory(
    model: str, features: int, size: int, batch_size: int, accelerator: str = "auto", in_channels: int = 3
) -> None:
    """Refuse a model that would not fit in the memory it would train in, before anything is allocated.

    Raises:
        GliomasegError: the estimate (:func:`estimate_training_bytes`) and the memory, with the fix.
    """
    needed, parameters, _ = estimate_training_bytes(model, features, size, batch_size, in_channels)
    available = machine_memory_bytes(accelerator)
    if available is not None and needed > available:
        raise GliomasegError(
            f"arch={model!r} with features={features}, size={size}, batch_size={batch_size}: training would need "
            f"about {needed / 2**30:,.1f} GB ({parameters:,} parameters, and the activations of {batch_size} slice(s) "
            f"of {size} x {size}), more than the {available / 2**30:,.1f} GB of this machine; lower --features, "
            "--size or --batch-size"
        )
